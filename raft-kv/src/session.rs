//! Client sessions for duplicate detection (Raft thesis, section 6.3).
//!
//! For each client the store keeps the sequence number of the last request it applied and that
//! request's response. A retry of that request gets the cached response instead of being applied
//! again; an older request gets [`Response::SessionExpired`]. The table is bounded: past
//! `max_sessions` clients, the one whose last request has the lowest log index is evicted. Log
//! indices are the same on every replica, so every replica evicts the same client.
//!
//! An evicted client is a stranger again: its next request is applied whatever its sequence
//! number, so a retry that arrives after its client was evicted may be applied twice. The bound
//! should be well above the number of clients active within one retry period.

use std::collections::BTreeMap;

use crate::response::Response;

/// What the store remembers about one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub(crate) last_seq: u64,
    pub(crate) last_index: u64,
    pub(crate) response: Response,
}

impl Session {
    /// The sequence number of the client's last applied request.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The log index of the client's latest request, applied, retried or expired; the table
    /// evicts the session with the lowest.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The response to the client's last applied request.
    pub fn response(&self) -> &Response {
        &self.response
    }
}

/// What the table says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A request the client has not made before: apply it, then [`Sessions::record`] it.
    Fresh,
    /// A retry of the last applied request; here is its response.
    Duplicate(Response),
    /// Older than the last applied request.
    Expired,
}

/// The bounded table of sessions, with an index from last use to client for eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sessions {
    max: usize,
    clients: BTreeMap<u64, Session>,
    /// `last_index` of every session to its client. Every log index touches at most one session,
    /// so the keys are unique.
    by_last_use: BTreeMap<u64, u64>,
}

impl Sessions {
    /// An empty table holding at most `max` sessions (`0` disables duplicate detection).
    pub(crate) fn new(max: usize) -> Self {
        Sessions {
            max,
            clients: BTreeMap::new(),
            by_last_use: BTreeMap::new(),
        }
    }

    /// The bound.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// The number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }

    /// The session of `client_id`.
    pub(crate) fn get(&self, client_id: u64) -> Option<&Session> {
        self.clients.get(&client_id)
    }

    /// Every session, by increasing client id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Session)> {
        self.clients.iter().map(|(&c, s)| (c, s))
    }

    /// Classifies request `seq` of `client_id`, carried by log entry `index`, and marks the
    /// session (if any) as used at `index`. `index` must exceed every index seen before.
    pub(crate) fn check(&mut self, client_id: u64, seq: u64, index: u64) -> Lookup {
        let Some(session) = self.clients.get_mut(&client_id) else {
            return Lookup::Fresh;
        };
        self.by_last_use.remove(&session.last_index);
        session.last_index = index;
        self.by_last_use.insert(index, client_id);
        if seq == session.last_seq {
            Lookup::Duplicate(session.response.clone())
        } else if seq < session.last_seq {
            Lookup::Expired
        } else {
            Lookup::Fresh
        }
    }

    /// Records that request `seq` of `client_id`, carried by log entry `index`, was applied
    /// with `response`. Creating a session beyond the bound evicts the least recently used one,
    /// whose client id is returned.
    pub(crate) fn record(
        &mut self,
        client_id: u64,
        seq: u64,
        index: u64,
        response: Response,
    ) -> Option<u64> {
        let session = Session {
            last_seq: seq,
            last_index: index,
            response,
        };
        if let Some(old) = self.clients.insert(client_id, session) {
            self.by_last_use.remove(&old.last_index);
        }
        self.by_last_use.insert(index, client_id);
        if self.clients.len() <= self.max {
            return None;
        }
        let (_, victim) = self.by_last_use.pop_first()?;
        self.clients.remove(&victim);
        Some(victim)
    }

    /// Adds a session read from a snapshot. Returns `false`, changing nothing, if the client
    /// already has a session or another session was last used at the same index.
    pub(crate) fn insert_restored(&mut self, client_id: u64, session: Session) -> bool {
        if self.clients.contains_key(&client_id)
            || self.by_last_use.contains_key(&session.last_index)
        {
            return false;
        }
        self.by_last_use.insert(session.last_index, client_id);
        self.clients.insert(client_id, session);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(n: u8) -> Response {
        Response::Get {
            value: Some(bytes::Bytes::from(vec![n])),
        }
    }

    #[test]
    fn classifies_fresh_duplicate_and_expired() {
        let mut s = Sessions::new(10);
        assert_eq!(s.check(1, 5, 1), Lookup::Fresh);
        assert_eq!(s.record(1, 5, 1, resp(5)), None);
        assert_eq!(s.check(1, 5, 2), Lookup::Duplicate(resp(5)));
        assert_eq!(s.check(1, 4, 3), Lookup::Expired);
        assert_eq!(s.check(1, 6, 4), Lookup::Fresh);
        assert_eq!(s.record(1, 6, 4, resp(6)), None);
        assert_eq!(s.check(1, 6, 5), Lookup::Duplicate(resp(6)));
        assert_eq!(s.get(1).map(Session::last_index), Some(5));
        assert_eq!(s.len(), 1);
        assert_eq!(s.by_last_use.len(), 1);
    }

    #[test]
    fn evicts_the_least_recently_used_client() {
        let mut s = Sessions::new(2);
        s.record(1, 1, 1, resp(1));
        s.record(2, 1, 2, resp(2));
        // Client 1 retries at index 3, so client 2 is now the least recently used.
        assert_eq!(s.check(1, 1, 3), Lookup::Duplicate(resp(1)));
        assert_eq!(s.record(3, 1, 4, resp(3)), Some(2));
        assert!(s.get(2).is_none());
        assert_eq!(s.len(), 2);
        assert_eq!(s.by_last_use.len(), 2);
        // Client 2 is a stranger again.
        assert_eq!(s.check(2, 1, 5), Lookup::Fresh);
    }

    #[test]
    fn zero_bound_keeps_nothing() {
        let mut s = Sessions::new(0);
        assert_eq!(s.record(1, 1, 1, resp(1)), Some(1));
        assert_eq!(s.len(), 0);
        assert_eq!(s.check(1, 1, 2), Lookup::Fresh);
    }

    #[test]
    fn insert_restored_rejects_conflicts() {
        let mut s = Sessions::new(5);
        let session = |index| Session {
            last_seq: 1,
            last_index: index,
            response: resp(0),
        };
        assert!(s.insert_restored(1, session(3)));
        assert!(!s.insert_restored(1, session(4)));
        assert!(!s.insert_restored(2, session(3)));
        assert!(s.insert_restored(2, session(4)));
        assert_eq!(s.len(), 2);
    }
}
