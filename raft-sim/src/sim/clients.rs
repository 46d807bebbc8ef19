//! Client events: sending with retries and timeouts, replies, and recording the history.

use raft_kv::Response;

use super::{Ev, Sim, TICK_US};
use crate::client::{output_of, value_after, Reply, MAX_ATTEMPTS};
use crate::trace::tag;

/// A client gives up on one attempt after this long.
const ATTEMPT_TIMEOUT_US: u64 = 30 * TICK_US;

impl Sim {
    pub(super) fn client_send(&mut self, c: usize) {
        let Some(op) = self.clients[c].current.as_ref() else {
            return;
        };
        let (seq, attempt, node, data) = (op.seq, op.attempt, op.target, op.data.clone());
        let lost = self.rng.chance(self.net.loss);
        let d = self.rng.range(100, 1_500);
        if !lost {
            self.at(
                d,
                Ev::ClientSend {
                    client: c,
                    node,
                    seq,
                    data,
                },
            );
        }
        self.at(
            ATTEMPT_TIMEOUT_US,
            Ev::ClientTimeout {
                client: c,
                seq,
                attempt,
            },
        );
    }

    /// Moves the in-flight operation to another attempt at `target` after `delay`, or gives up.
    fn client_retry(&mut self, c: usize, target: usize, delay: u64) {
        let Some(op) = self.clients[c].current.as_mut() else {
            return;
        };
        op.attempt += 1;
        if op.attempt >= MAX_ATTEMPTS {
            // Outcome unknown: the history keeps it open-ended.
            let hist = op.hist;
            self.clients[c].current = None;
            let id = self.clients[c].id;
            self.trace
                .record(self.now, &[tag("giveup"), id, hist as u64], || {
                    format!("client {id} gives up on operation #{hist} (outcome unknown)")
                });
            let think = self.rng.range(0, 2 * TICK_US);
            self.at(think, Ev::ClientNext(c));
            return;
        }
        op.target = target;
        let (seq, attempt) = (op.seq, op.attempt);
        self.clients[c].leader_guess = target;
        self.at(
            delay,
            Ev::ClientResend {
                client: c,
                seq,
                attempt,
            },
        );
    }

    pub(super) fn client_resend(&mut self, c: usize, seq: u64, attempt: u32) {
        if self.clients[c]
            .current
            .as_ref()
            .is_some_and(|op| op.seq == seq && op.attempt == attempt)
        {
            self.client_send(c);
        }
    }

    pub(super) fn client_timeout(&mut self, c: usize, seq: u64, attempt: u32) {
        let Some(op) = self.clients[c].current.as_ref() else {
            return;
        };
        if op.seq != seq || attempt != op.attempt {
            return;
        }
        let n = self.nodes.len();
        let target = (op.target + 1 + self.rng.index(n - 1)) % n;
        self.client_retry(c, target, 0);
    }

    pub(super) fn client_reply(&mut self, c: usize, seq: u64, reply: Reply) {
        let Some(op) = self.clients[c].current.as_ref() else {
            return;
        };
        if op.seq != seq {
            return;
        }
        match reply {
            Reply::Done(resp) => self.client_done(c, resp),
            Reply::NotLeader(hint) => {
                let n = self.nodes.len();
                let target = hint.unwrap_or_else(|| self.rng.index(n));
                let delay = if hint.is_some() { 0 } else { 5 * TICK_US };
                self.client_retry(c, target, delay);
            }
            Reply::Busy => {
                let target = op.target;
                self.client_retry(c, target, 10 * TICK_US);
            }
        }
    }

    fn client_done(&mut self, c: usize, resp: Response) {
        let Some(op) = self.clients[c].current.take() else {
            return;
        };
        let record = &mut self.history[op.hist];
        let Some(output) = output_of(&record.input, &resp) else {
            let detail = format!(
                "client {} got {resp:?} for {:?}",
                self.clients[c].id, record.input
            );
            self.check
                .report(self.now, "sensible client response", detail);
            return;
        };
        record.ret = Some(self.now);
        record.output = Some(output.clone());
        let key_index = record
            .key
            .get(1..)
            .and_then(|k| std::str::from_utf8(k).ok())
            .and_then(|k| k.parse().ok());
        if let (Some(k), Some(v)) = (key_index, value_after(&record.input, &output)) {
            self.clients[c].observe(k, v);
        }
        if self.probe_client == Some(c) && self.healed_at.is_some() && self.recovered_at.is_none() {
            self.recovered_at = Some(self.now);
        }
        let think = self.rng.range(0, 2 * TICK_US);
        self.at(think, Ev::ClientNext(c));
    }
}
