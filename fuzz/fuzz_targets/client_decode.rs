//! Arbitrary bytes -> the client-facing decoders:
//!
//! * the KV codecs: `Command::decode`, `Response::decode`, `KvStore::restore` (see
//!   `raft_fuzz::kv`);
//! * the client protocol of `raft-driver-tokio`: `decode_request` and `decode_response`, with
//!   the cluster id the frame names (bytes 1..9) and with a fixed one; the payload of an accepted
//!   proposal or applied answer goes through the KV checks as well.
//!
//! Never panics. Whatever is accepted re-encodes and decodes to the same value, and the
//! client protocol's encoding is canonical: an accepted frame re-encodes to exactly the input.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use raft_driver_tokio::protocol::{
    decode_request, decode_response, encode_request, encode_response, ClientRequest,
    ClientResponse, ProtocolError,
};

/// The fixed cluster id; the seed frames are written for it.
const CLUSTER_ID: u64 = raft_fuzz::wire::CLUSTER_ID;

fuzz_target!(|data: &[u8]| {
    raft_fuzz::kv::check(data);
    check_protocol(data);
});

fn check_protocol(data: &[u8]) {
    let frame = Bytes::copy_from_slice(data);
    let named = data
        .get(1..9)
        .map(|id| u64::from_le_bytes(id.try_into().expect("8 bytes")));
    let mut ids = vec![CLUSTER_ID];
    ids.extend(named.filter(|&id| id != CLUSTER_ID));
    for cluster_id in ids {
        let request = decode_request(cluster_id, frame.clone());
        let response = decode_response(cluster_id, frame.clone());
        assert!(
            request.is_err() || response.is_err(),
            "a frame is both a request and a response"
        );
        for err in [request.as_ref().err(), response.as_ref().err()] {
            if let Some(ProtocolError::WrongCluster { expected, found }) = err {
                assert_eq!(*expected, cluster_id, "{err:?}");
                assert_eq!(Some(*found), named, "{err:?}");
            }
        }
        if Some(cluster_id) != named {
            assert!(
                request.is_err() && response.is_err(),
                "accepted a frame that does not name cluster {cluster_id:#x}"
            );
        }
        if let Ok(req) = request {
            check_request(cluster_id, &frame, &req);
        }
        if let Ok(resp) = response {
            check_response(cluster_id, &frame, &resp);
        }
    }
}

fn check_request(cluster_id: u64, frame: &Bytes, req: &ClientRequest) {
    let enc = encode_request(cluster_id, req);
    assert_eq!(&enc, frame, "request encoding is not canonical: {req:?}");
    assert_eq!(
        decode_request(cluster_id, enc).as_ref(),
        Ok(req),
        "request round trip"
    );
    if let ClientRequest::Propose { command } = req {
        // What a node would append to its log: the KV codecs get it too.
        raft_fuzz::kv::check(command);
        if !command.is_empty() {
            assert!(
                frame.as_ptr_range().contains(&command.as_ptr()),
                "the command was copied out of the frame"
            );
        }
    }
    // The value does not depend on the cluster it travels in.
    let other = cluster_id ^ 1;
    assert_eq!(
        decode_request(other, encode_request(other, req)).as_ref(),
        Ok(req)
    );
}

fn check_response(cluster_id: u64, frame: &Bytes, resp: &ClientResponse) {
    let enc = encode_response(cluster_id, resp);
    assert_eq!(&enc, frame, "response encoding is not canonical: {resp:?}");
    assert_eq!(
        decode_response(cluster_id, enc).as_ref(),
        Ok(resp),
        "response round trip"
    );
    if let ClientResponse::Applied { response, .. } = resp {
        raft_fuzz::kv::check(response);
        if !response.is_empty() {
            assert!(
                frame.as_ptr_range().contains(&response.as_ptr()),
                "the response was copied out of the frame"
            );
        }
    }
    let other = cluster_id ^ 1;
    assert_eq!(
        decode_response(other, encode_response(other, resp)).as_ref(),
        Ok(resp)
    );
}
