//! Simulated clients: each runs one operation at a time on a small key space, with timeouts,
//! retries under the same (client id, sequence number), and redirects to the leader. Every
//! operation is recorded for the linearizability checker.

use bytes::Bytes;
use raft_kv::{Command, Op, Response};

use crate::linearizability::{KvInput, KvOutput, Operation};
use crate::rng::SimRng;

/// How a node answered a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The command was applied; this is its result.
    Done(Response),
    /// Not the leader; try the hinted node (index) if any.
    NotLeader(Option<usize>),
    /// The leader refused for now (overload); retry later.
    Busy,
}

/// The operation a client has in flight.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// Sequence number (the same for every retry).
    pub seq: u64,
    /// The encoded command.
    pub data: Bytes,
    /// Position in the history.
    pub hist: usize,
    /// Attempts so far.
    pub attempt: u32,
    /// Node the last attempt went to.
    pub target: usize,
}

/// One simulated client.
#[derive(Debug, Clone)]
pub struct Client {
    /// Client id used for duplicate detection (never 0).
    pub id: u64,
    /// Last sequence number used.
    pub seq: u64,
    /// The operation in flight.
    pub current: Option<InFlight>,
    /// The node it believes leads.
    pub leader_guess: usize,
    /// The last value it saw per key (to make compare-and-swap likely to succeed).
    seen: Vec<Option<Bytes>>,
}

/// Client behaviour limits.
pub const MAX_ATTEMPTS: u32 = 6;

impl Client {
    /// A client with id `id` that starts by talking to `first_target`.
    pub fn new(id: u64, keys: usize, first_target: usize) -> Self {
        Client {
            id,
            seq: 0,
            current: None,
            leader_guess: first_target,
            seen: vec![None; keys],
        }
    }

    /// Draws the next operation: returns the command to send and the history record.
    pub fn next_op(&mut self, rng: &mut SimRng, keys: usize, now: u64) -> (Command, Operation) {
        self.seq += 1;
        let k = rng.index(keys);
        let key = Bytes::from(format!("k{k}"));
        let fresh = || Bytes::from(format!("{}.{}", self.id, self.seq));
        let (op, input) = match rng.index(10) {
            0..=2 => (Op::Get { key: key.clone() }, KvInput::Get),
            3..=6 => {
                let v = fresh();
                (
                    Op::Put {
                        key: key.clone(),
                        value: v.clone(),
                    },
                    KvInput::Put(v),
                )
            }
            7 => (Op::Delete { key: key.clone() }, KvInput::Delete),
            _ => {
                let expected = if rng.chance(0.8) {
                    self.seen[k].clone()
                } else {
                    None
                };
                let new = if rng.chance(0.9) { Some(fresh()) } else { None };
                (
                    Op::Cas {
                        key: key.clone(),
                        expected: expected.clone(),
                        new: new.clone(),
                    },
                    KvInput::Cas { expected, new },
                )
            }
        };
        let cmd = Command::new(self.id, self.seq, op);
        let record = Operation::unknown(self.id, key, input, now);
        (cmd, record)
    }

    /// Remembers what a completed operation revealed about its key.
    pub fn observe(&mut self, key_index: usize, value: Option<Bytes>) {
        if let Some(slot) = self.seen.get_mut(key_index) {
            *slot = value;
        }
    }
}

/// Maps a state machine response to the checker's output, or `None` when the response is not
/// one a correct cluster gives to the current operation.
pub fn output_of(input: &KvInput, resp: &Response) -> Option<KvOutput> {
    match (input, resp) {
        (KvInput::Get, Response::Get { value }) => Some(KvOutput::Get(value.clone())),
        (KvInput::Put(_), Response::Put { .. }) => Some(KvOutput::Put),
        (KvInput::Delete, Response::Delete { .. }) => Some(KvOutput::Delete),
        (KvInput::Cas { .. }, Response::Cas { succeeded, .. }) => Some(KvOutput::Cas(*succeeded)),
        _ => None,
    }
}

/// The key's value after the operation, as far as the client can tell.
pub fn value_after(input: &KvInput, out: &KvOutput) -> Option<Option<Bytes>> {
    match (input, out) {
        (KvInput::Get, KvOutput::Get(v)) => Some(v.clone()),
        (KvInput::Put(v), KvOutput::Put) => Some(Some(v.clone())),
        (KvInput::Delete, KvOutput::Delete) => Some(None),
        (KvInput::Cas { new, .. }, KvOutput::Cas(true)) => Some(new.clone()),
        _ => None,
    }
}
