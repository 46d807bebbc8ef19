//! `wire_decode`: the peer-to-peer frame codec of raft-proto-core.

use bytes::Bytes;
use raft_proto_core::codec::Codec;

/// The cluster id the target's codec belongs to (the seed corpus uses it).
pub const CLUSTER_ID: u64 = 0x5EED_C0DE;

/// Decodes `data`; if accepted, re-encodes and decodes again and compares.
pub fn check(data: &[u8]) {
    // Decode both as our cluster and, for frames long enough, as the cluster the frame names,
    // so that mutations of the cluster-id bytes do not make every input a WrongCluster.
    let mut codecs = vec![Codec::new(CLUSTER_ID)];
    if let Some(id) = data.get(1..9) {
        let id = u64::from_le_bytes(id.try_into().expect("8 bytes"));
        if id != CLUSTER_ID {
            codecs.push(Codec::new(id));
        }
    }
    for codec in codecs {
        let frame = Bytes::copy_from_slice(data);
        let Ok(env) = codec.decode(frame) else {
            continue;
        };
        assert_eq!(env.cluster_id, codec.cluster_id());
        let again = codec
            .encode(env.from, env.to, &env.msg)
            .expect("a decoded envelope must re-encode");
        // Byte equality is not required: bincode varints accept overlong forms.
        let env2 = codec.decode(again).expect("a re-encoded frame must decode");
        assert_eq!(env, env2, "decode(encode(decode(x))) != decode(x)");
    }
}
