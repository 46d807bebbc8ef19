//! Fault events: crashes and restarts, partitions, slow disks, and the final healing.

use raft_kv::{KvConfig, KvStore};
use raft_proto_core::{RaftNode, Role};

use super::{Ev, Sim};
use crate::client::Client;
use crate::faults::Fault;
use crate::trace::tag;

impl Sim {
    pub(super) fn fault(&mut self, f: Fault) {
        let n = self.nodes.len();
        match f {
            Fault::Crash(i) => self.crash(i % n),
            Fault::Restart(i) => self.restart(i % n),
            Fault::CrashLeader => {
                let i = self.current_leader().unwrap_or_else(|| self.rng.index(n));
                self.crash(i);
            }
            Fault::PowerLoss => {
                self.trace.record(self.now, &[tag("powerloss")], || {
                    "power loss: every node crashes".to_string()
                });
                for i in 0..n {
                    self.crash(i);
                }
            }
            Fault::RestartAll => {
                for i in 0..n {
                    self.restart(i);
                }
            }
            Fault::Partition(kind) => {
                let leader = self.current_leader();
                let text = self.net.partition(kind, leader, &mut self.rng);
                self.trace
                    .record(self.now, &[tag("partition"), kind as u64], || {
                        format!("partition: {text}")
                    });
            }
            Fault::Heal => {
                self.net.heal();
                self.trace
                    .record(self.now, &[tag("heal")], || "partitions healed".to_string());
            }
            Fault::Isolate(i) => {
                self.net.set_isolated(i % n, true);
                self.trace
                    .record(self.now, &[tag("isolate"), (i % n) as u64], || {
                        format!("n{} is cut off", i % n + 1)
                    });
            }
            Fault::Rejoin(i) => {
                self.net.set_isolated(i % n, false);
                self.trace
                    .record(self.now, &[tag("rejoin"), (i % n) as u64], || {
                        format!("n{} is reconnected", i % n + 1)
                    });
            }
            Fault::SlowDisk(i) => {
                self.nodes[i % n].slow_disk = true;
                self.trace
                    .record(self.now, &[tag("slowdisk"), (i % n) as u64], || {
                        format!("disk of n{} turns slow", i % n + 1)
                    });
            }
            Fault::FastDisk(i) => {
                self.nodes[i % n].slow_disk = false;
                self.trace
                    .record(self.now, &[tag("fastdisk"), (i % n) as u64], || {
                        format!("disk of n{} is fast again", i % n + 1)
                    });
            }
        }
    }

    /// A reactive nemesis: right after a node wins an election, sometimes cut it off or crash
    /// it, so that short-lived leaders leave entries on a minority (the Figure 8 pattern).
    pub(super) fn on_new_leader(&mut self, n: usize) {
        if self.healed_at.is_some() {
            return;
        }
        let soon = self.rng.range(0, 1_500);
        let later = soon + self.rng.range(2 * super::TICK_US, 60 * super::TICK_US);
        if self.kinds.partitions && self.rng.chance(0.25) {
            self.at(soon, Ev::Fault(Fault::Isolate(n)));
            self.at(later, Ev::Fault(Fault::Rejoin(n)));
        } else if self.kinds.crashes && self.nodes[n].disk.has_unsynced() && self.rng.chance(0.3) {
            // A leader still writing its first entries: crash it before or just after they
            // sync, and bring it back quickly.
            let when = self.rng.range(0, super::TICK_US);
            self.crash_and_restart(n, when);
        } else if self.kinds.crashes && self.rng.chance(0.2) {
            self.at(soon, Ev::Fault(Fault::Crash(n)));
            self.at(later, Ev::Fault(Fault::Restart(n)));
        }
    }

    /// Crashes node `n` after `delay` and restarts it soon after: half the time within a few
    /// milliseconds (a process restart), otherwise after up to 30 ticks.
    pub(super) fn crash_and_restart(&mut self, n: usize, delay: u64) {
        let down = if self.rng.chance(0.5) {
            self.rng.range(50, 3_000)
        } else {
            self.rng.range(super::TICK_US, 30 * super::TICK_US)
        };
        self.at(delay, Ev::Fault(Fault::Crash(n)));
        self.at(delay + down, Ev::Fault(Fault::Restart(n)));
    }

    pub(super) fn current_leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.raft.as_ref().is_some_and(|r| r.role() == Role::Leader))
            .max_by_key(|(_, n)| n.raft.as_ref().map(|r| r.term()))
            .map(|(i, _)| i)
    }

    fn crash(&mut self, i: usize) {
        if self.nodes[i].raft.is_none() {
            return;
        }
        self.crashes += 1;
        let node = &mut self.nodes[i];
        node.raft = None;
        node.incarnation += 1;
        node.sync_busy = false;
        node.requests.clear();
        node.pending.clear();
        node.unsynced_hs.clear();
        node.reported_seq = 0;
        node.kv = KvStore::new(KvConfig::default());
        let report = node.disk.crash(&mut self.rng, true);
        self.trace.record(
            self.now,
            &[
                tag("crash"),
                i as u64,
                report.survived as u64,
                report.lost as u64,
                u64::from(report.torn),
            ],
            || {
                format!(
                    "n{} crashes: {} unsynced writes reached the disk, {} lost{}",
                    i + 1,
                    report.survived,
                    report.lost,
                    if report.torn { ", last one torn" } else { "" }
                )
            },
        );
    }

    pub(super) fn restart(&mut self, i: usize) {
        if self.nodes[i].raft.is_some() {
            return;
        }
        let recovered = match self.nodes[i].disk.recover() {
            Ok(r) => r,
            Err(e) => {
                self.check
                    .report(self.now, "disk recovery", format!("n{}: {e}", i + 1));
                return;
            }
        };
        let torn = self.nodes[i].disk.last_torn_bytes;
        let recovered_snapshot = recovered.snapshot.is_some();
        let raft = match RaftNode::new(self.nodes[i].config.clone(), recovered) {
            Ok(r) => r,
            Err(e) => {
                self.check.report(
                    self.now,
                    "recovered state is valid",
                    format!("n{}: {e}", i + 1),
                );
                return;
            }
        };
        let has_snapshot = recovered_snapshot;
        self.check.on_restart(self.now, i, &raft);
        // The store comes back from the latest snapshot; the entries after it apply anew.
        if has_snapshot && !self.restore_store(i) {
            return;
        }
        let (term, last) = (raft.term(), raft.last_log_id().index);
        self.trace.record(self.now, &[tag("restart"), i as u64, term, last], || {
            format!("n{} restarts at term {term} with {last} log entries (dropped {torn} torn bytes)", i + 1)
        });
        self.nodes[i].raft = Some(raft);
        let inc = self.nodes[i].incarnation;
        let first = self.rng.range(1, self.nodes[i].tick_period);
        self.at(first, Ev::Tick(i, inc));
    }

    /// End of the faulty phase: heal everything, then watch for progress.
    pub(super) fn heal(&mut self) {
        self.net.heal();
        self.net.calm();
        for i in 0..self.nodes.len() {
            self.nodes[i].slow_disk = false;
            self.restart(i);
        }
        self.stop_issuing = true;
        self.healed_at = Some(self.now);
        self.trace.record(self.now, &[tag("healall")], || {
            "all faults healed; waiting for a write to commit".to_string()
        });
        let c = self.clients.len();
        let id = 1_000 + c as u64;
        let target = self.rng.index(self.nodes.len());
        self.clients.push(Client::new(id, self.cfg.keys, target));
        self.probe_client = Some(c);
        self.at(0, Ev::ClientNext(c));
    }
}
