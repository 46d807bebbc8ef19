//! The key-value state machine that committed log entries drive.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::command::{Command, CommandError, Op};
use crate::response::Response;
use crate::session::{Lookup, Session, Sessions};

/// The default bound on client sessions.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

/// Settings of a [`KvStore`]. Every replica must use the same ones, since they change what
/// commands return; snapshots carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KvConfig {
    /// The most client sessions kept for duplicate detection; past it, the least recently used
    /// is evicted. `0` disables duplicate detection.
    pub max_sessions: usize,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// The outcome of applying one log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The entry's log index, now the store's last applied index.
    pub index: u64,
    /// The command's client, or `0` if it had none or could not be decoded.
    pub client_id: u64,
    /// The command's sequence number, or `0` if it could not be decoded.
    pub seq: u64,
    /// What the command returned.
    pub response: Response,
    /// Whether the command was a retry of its client's last applied request, answered from the
    /// session cache without being applied again.
    pub duplicate: bool,
}

/// Why a log entry was refused. A refused entry changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The entry's index is not above the last applied index.
    #[error("log index {index} is not above the last applied index {last_applied}")]
    IndexNotIncreasing {
        /// The refused index.
        index: u64,
        /// The store's last applied index.
        last_applied: u64,
    },
}

/// The replicated key-value state machine.
///
/// Deterministic: replicas that apply the same entries at the same indices, from the same
/// configuration, are equal (`==`) and have the same [`KvStore::digest`]. Iteration is by
/// ordered maps only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvStore {
    pub(crate) last_applied: u64,
    pub(crate) data: BTreeMap<Bytes, Bytes>,
    pub(crate) sessions: Sessions,
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore::new(KvConfig::default())
    }
}

impl KvStore {
    /// An empty store that has applied nothing.
    pub fn new(config: KvConfig) -> KvStore {
        KvStore {
            last_applied: 0,
            data: BTreeMap::new(),
            sessions: Sessions::new(config.max_sessions),
        }
    }

    /// The store's configuration.
    pub fn config(&self) -> KvConfig {
        KvConfig {
            max_sessions: self.sessions.max(),
        }
    }

    /// The index of the last applied log entry (`0` before the first).
    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }

    /// The value of `key`, as of the last applied entry.
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.data.get(key)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Every key and value, by increasing key.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.data.iter()
    }

    /// The session of `client_id`, if the store keeps one.
    pub fn session(&self, client_id: u64) -> Option<&Session> {
        self.sessions.get(client_id)
    }

    /// The number of client sessions kept.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Applies the log entry at `index` whose payload is the encoded command `data`, copying
    /// the payload once.
    ///
    /// A payload that is not a valid command is still applied, as a no-op answered with
    /// [`Response::Invalid`], so that a bad entry cannot stop the state machine; every replica
    /// answers it the same way. Fails, changing nothing, if `index` is not above
    /// [`KvStore::last_applied`]. Indices may skip (entries of other kinds).
    pub fn apply(&mut self, index: u64, data: &[u8]) -> Result<Applied, ApplyError> {
        self.check_index(index)?;
        Ok(self.apply_decoded(index, Command::decode(data)))
    }

    /// Like [`KvStore::apply`], without copying: stored keys and values are slices of `data`
    /// and keep its whole buffer alive. When `data` is a slice of a larger buffer (a received
    /// frame holding many entries), [`KvStore::apply`] avoids pinning that buffer.
    pub fn apply_bytes(&mut self, index: u64, data: &Bytes) -> Result<Applied, ApplyError> {
        self.check_index(index)?;
        Ok(self.apply_decoded(index, Command::decode_bytes(data)))
    }

    /// Applies a log entry that carries no command (a leader's no-op, a configuration change):
    /// only the last applied index moves. Fails, changing nothing, if `index` is not above
    /// [`KvStore::last_applied`].
    pub fn apply_noop(&mut self, index: u64) -> Result<(), ApplyError> {
        self.check_index(index)?;
        self.last_applied = index;
        Ok(())
    }

    fn check_index(&self, index: u64) -> Result<(), ApplyError> {
        if index <= self.last_applied {
            return Err(ApplyError::IndexNotIncreasing {
                index,
                last_applied: self.last_applied,
            });
        }
        Ok(())
    }

    fn apply_decoded(&mut self, index: u64, decoded: Result<Command, CommandError>) -> Applied {
        self.last_applied = index;
        let cmd = match decoded {
            Ok(cmd) => cmd,
            Err(err) => {
                return Applied {
                    index,
                    client_id: 0,
                    seq: 0,
                    response: Response::invalid(&err),
                    duplicate: false,
                }
            }
        };
        let Command { client_id, seq, op } = cmd;
        let applied = |response, duplicate| Applied {
            index,
            client_id,
            seq,
            response,
            duplicate,
        };
        if client_id == 0 {
            return applied(self.execute(op), false);
        }
        match self.sessions.check(client_id, seq, index) {
            Lookup::Duplicate(response) => applied(response, true),
            Lookup::Expired => applied(Response::SessionExpired, false),
            Lookup::Fresh => {
                let response = self.execute(op);
                self.sessions
                    .record(client_id, seq, index, response.clone());
                applied(response, false)
            }
        }
    }

    fn execute(&mut self, op: Op) -> Response {
        match op {
            Op::Put { key, value } => Response::Put {
                previous: self.data.insert(key, value),
            },
            Op::Get { key } => Response::Get {
                value: self.data.get(&key).cloned(),
            },
            Op::Delete { key } => Response::Delete {
                previous: self.data.remove(&key),
            },
            Op::Cas { key, expected, new } => {
                let current = self.data.get(&key).cloned();
                let succeeded = current == expected;
                if succeeded {
                    match new {
                        Some(value) => {
                            self.data.insert(key, value);
                        }
                        None => {
                            self.data.remove(&key);
                        }
                    }
                }
                Response::Cas { succeeded, current }
            }
        }
    }
}

#[cfg(test)]
mod tests;
