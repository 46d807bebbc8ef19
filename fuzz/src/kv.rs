//! `client_decode`: the KV command and response codecs and KV snapshot restore.
//!
//! There is no networked client protocol yet; `Command` is what a log entry carries and
//! `Response` what applying it produces, so these are the client-facing codecs today.

use bytes::Bytes;
use raft_kv::{Command, KvStore, Response};

/// Feeds `data` to every decoder; accepted values must round-trip.
pub fn check(data: &[u8]) {
    let shared = Bytes::copy_from_slice(data);

    let cmd = Command::decode(data);
    assert_eq!(
        cmd,
        Command::decode_bytes(&shared),
        "decode vs decode_bytes"
    );
    if let Ok(cmd) = cmd {
        let enc = cmd.encode().expect("a decoded command must re-encode");
        assert_eq!(enc.len(), cmd.encoded_len(), "encoded_len is not exact");
        assert_eq!(
            Command::decode(&enc).as_ref(),
            Ok(&cmd),
            "command round trip"
        );
    }

    let resp = Response::decode(data);
    assert_eq!(
        resp,
        Response::decode_bytes(&shared),
        "decode vs decode_bytes"
    );
    if let Ok(resp) = resp {
        let enc = resp.encode().expect("a decoded response must re-encode");
        assert_eq!(enc.len(), resp.encoded_len(), "encoded_len is not exact");
        assert_eq!(
            Response::decode(&enc).as_ref(),
            Ok(&resp),
            "response round trip"
        );
    }

    if let Ok(store) = KvStore::restore(data) {
        let snap = store.snapshot();
        let again = KvStore::restore(&snap).expect("a re-taken snapshot must restore");
        assert_eq!(again, store, "snapshot round trip");
        assert_eq!(again.digest(), store.digest());
        // The restored store keeps working: applying the input as the next entry is fine
        // (an undecodable entry is answered with Response::Invalid, not an error).
        let mut store = store;
        let next = store.last_applied().saturating_add(1);
        if next > store.last_applied() {
            store.apply(next, data).expect("apply at the next index");
        }
    }

    // Any bytes are a valid log entry for a fresh store.
    let mut fresh = KvStore::default();
    let applied = fresh.apply(1, data).expect("apply at index 1");
    if Command::decode(data).is_err() {
        assert!(matches!(applied.response, Response::Invalid { .. }));
    }
}
