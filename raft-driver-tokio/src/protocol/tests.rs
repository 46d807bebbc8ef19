use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

const CLUSTER: u64 = 0x5EED_0000_C1A5_7E12;

fn peer(id: NodeId, address: &str, matched: Index) -> PeerReport {
    PeerReport {
        id,
        address: address.into(),
        matched,
        next: matched + 1,
        replicating: true,
        inflight: 3,
        active: true,
        connected: false,
        snapshot: id.is_multiple_of(2).then_some(SnapshotSending {
            index: 40,
            acked: 1 << 20,
            total: 3 << 20,
        }),
    }
}

fn status(peers: Vec<PeerReport>) -> NodeStatus {
    NodeStatus {
        id: 1,
        cluster_id: CLUSTER,
        role: Role::Leader,
        term: 7,
        vote: 1,
        leader: Some(1),
        commit: 100,
        applied: 99,
        last_index: 101,
        persisted: 101,
        peers,
        leader_changes: 2,
        proposals: 1_000,
        storage_batches: 50,
        storage_writes: 60,
        storage_entries: 101,
        storage_micros: 123_456,
        bytes_sent: 1 << 20,
        bytes_received: 1 << 19,
        uptime_ms: 86_400_000,
        snapshot: SnapshotReport {
            index: 90,
            term: 6,
            bytes: 12_345,
            age_ms: 5_000,
            taking: Some(99),
            receiving: None,
            first_index: 80,
            log_entries_in_memory: 21,
            log_bytes_in_memory: 2_100,
            taken: 3,
            sent: 1,
            installed: 0,
        },
        membership: sample_membership(true),
        transfer: Some(3),
    }
}

fn sample_membership(joint: bool) -> MembershipReport {
    let member = |id, role, address: &str| MemberReport {
        id,
        role,
        address: address.into(),
    };
    MembershipReport {
        index: 77,
        joint,
        committed: !joint,
        members: if joint {
            vec![
                member(1, MemberRole::Voter, "127.0.0.1:7001"),
                member(2, MemberRole::Leaving, "[::1]:7002"),
                member(4, MemberRole::Joining, "node4.example:7004"),
                member(5, MemberRole::Learner, ""),
            ]
        } else {
            vec![member(1, MemberRole::Voter, "127.0.0.1:7001")]
        },
    }
}

fn requests() -> Vec<ClientRequest> {
    vec![
        ClientRequest::Propose {
            command: Bytes::from_static(b"put k v"),
        },
        ClientRequest::Propose {
            command: Bytes::new(),
        },
        ClientRequest::Status,
        ClientRequest::Snapshot,
        ClientRequest::ChangeMembership {
            steps: vec![
                MemberChange::AddLearner {
                    id: 4,
                    address: "127.0.0.1:7004".into(),
                },
                MemberChange::Promote { id: 5 },
                MemberChange::Remove { id: 1 },
                MemberChange::SetAddress {
                    id: 2,
                    address: "[::1]:7002".into(),
                },
            ],
        },
        ClientRequest::ChangeMembership { steps: vec![] },
        ClientRequest::TransferLeader { to: Some(2) },
        ClientRequest::TransferLeader { to: None },
    ]
}

fn responses() -> Vec<ClientResponse> {
    let mut follower = status(vec![]);
    follower.role = Role::Follower;
    follower.leader = None;
    follower.vote = 0;
    follower.membership = MembershipReport::default();
    follower.transfer = None;
    vec![
        ClientResponse::Applied {
            index: 42,
            response: Bytes::from_static(b"ok"),
        },
        ClientResponse::Applied {
            index: u64::MAX,
            response: Bytes::new(),
        },
        ClientResponse::NotLeader {
            leader: Some(3),
            leader_addr: Some("10.0.0.3:7001".into()),
        },
        ClientResponse::NotLeader {
            leader: Some(3),
            leader_addr: None,
        },
        ClientResponse::NotLeader {
            leader: None,
            leader_addr: None,
        },
        ClientResponse::Unknown {
            reason: "leadership changed while the command was pending".into(),
        },
        ClientResponse::Rejected {
            reason: "überlastet: 1024 proposals pending ✋".into(),
        },
        ClientResponse::Rejected {
            reason: String::new(),
        },
        ClientResponse::Status(Box::new(status(vec![
            peer(2, "node2.example:7000", 100),
            peer(3, "[::1]:7000", 57),
        ]))),
        ClientResponse::Status(Box::new(follower)),
        ClientResponse::Snapshot(SnapshotDone {
            index: 1_000_000,
            term: 4,
            bytes: 1 << 30,
            new: true,
        }),
        ClientResponse::Membership(sample_membership(false)),
        ClientResponse::Membership(sample_membership(true)),
        ClientResponse::Transferred { leader: 2, term: 9 },
    ]
}

/// Every valid frame the unit tests start from.
fn frames() -> Vec<Bytes> {
    let mut all: Vec<Bytes> = requests()
        .iter()
        .map(|r| encode_request(CLUSTER, r))
        .collect();
    all.extend(responses().iter().map(|r| encode_response(CLUSTER, r)));
    all
}

/// Decodes `frame` both ways; whatever is accepted must re-encode to exactly `frame`.
fn check_canonical(cluster_id: u64, frame: &Bytes) {
    if let Ok(req) = decode_request(cluster_id, frame.clone()) {
        assert_eq!(&encode_request(cluster_id, &req), frame, "{req:?}");
    }
    if let Ok(resp) = decode_response(cluster_id, frame.clone()) {
        assert_eq!(&encode_response(cluster_id, &resp), frame, "{resp:?}");
    }
}

fn decode_any(frame: &Bytes) -> Result<(), ProtocolError> {
    match decode_request(CLUSTER, frame.clone()) {
        Ok(_) => Ok(()),
        Err(ProtocolError::UnknownKind(_)) => decode_response(CLUSTER, frame.clone()).map(drop),
        Err(e) => Err(e),
    }
}

fn with_byte(frame: &Bytes, at: usize, value: u8) -> Bytes {
    let mut v = frame.to_vec();
    v[at] = value;
    Bytes::from(v)
}

#[test]
fn every_variant_round_trips() {
    for req in requests() {
        let frame = encode_request(CLUSTER, &req);
        assert_eq!(frame[0], PROTOCOL_VERSION);
        assert_eq!(frame[1..9], CLUSTER.to_le_bytes());
        assert_eq!(decode_request(CLUSTER, frame).as_ref(), Ok(&req));
    }
    for resp in responses() {
        let frame = encode_response(CLUSTER, &resp);
        assert_eq!(
            frame.len(),
            HEADER_BYTES + response_fields_len(&resp),
            "size estimate for {resp:?}"
        );
        assert_eq!(decode_response(CLUSTER, frame).as_ref(), Ok(&resp));
    }
}

#[test]
fn layout_is_little_endian_and_fixed() {
    let frame = encode_request(
        0x0102_0304_0506_0708,
        &ClientRequest::Propose {
            command: Bytes::from_static(b"ab"),
        },
    );
    let expected: &[&[u8]] = &[
        &[PROTOCOL_VERSION],
        &[8, 7, 6, 5, 4, 3, 2, 1],
        &[KIND_PROPOSE],
        &[2, 0, 0, 0],
        b"ab",
    ];
    assert_eq!(frame[..], expected.concat());
    let frame = encode_response(
        7,
        &ClientResponse::NotLeader {
            leader: Some(0x0203),
            leader_addr: None,
        },
    );
    let expected: &[&[u8]] = &[
        &[PROTOCOL_VERSION],
        &[7, 0, 0, 0, 0, 0, 0, 0],
        &[KIND_NOT_LEADER],
        &[1, 3, 2, 0, 0, 0, 0, 0, 0],
        &[0],
    ];
    assert_eq!(frame[..], expected.concat());
}

#[test]
fn payloads_are_slices_of_the_frame() {
    let frame = encode_request(
        CLUSTER,
        &ClientRequest::Propose {
            command: Bytes::from(vec![9u8; 1000]),
        },
    );
    let range = frame.as_ptr_range();
    let Ok(ClientRequest::Propose { command }) = decode_request(CLUSTER, frame.clone()) else {
        panic!("not a proposal");
    };
    assert!(range.contains(&command.as_ptr()), "command was copied");

    let frame = encode_response(
        CLUSTER,
        &ClientResponse::Applied {
            index: 1,
            response: Bytes::from(vec![7u8; 1000]),
        },
    );
    let range = frame.as_ptr_range();
    let Ok(ClientResponse::Applied { response, .. }) = decode_response(CLUSTER, frame.clone())
    else {
        panic!("not applied");
    };
    assert!(range.contains(&response.as_ptr()), "response was copied");
}

#[test]
fn every_truncation_is_an_error() {
    for frame in frames() {
        for len in 0..frame.len() {
            let cut = frame.slice(..len);
            for result in [
                decode_request(CLUSTER, cut.clone()).map(drop),
                decode_response(CLUSTER, cut.clone()).map(drop),
            ] {
                match result {
                    Err(ProtocolError::Truncated { .. }) => {}
                    // The kind byte is present: the other side's decoder does not know it.
                    Err(ProtocolError::UnknownKind(_)) if len >= HEADER_BYTES => {}
                    other => panic!("{len} of {} bytes of {frame:?}: {other:?}", frame.len()),
                }
            }
            assert!(decode_any(&cut).is_err());
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    for frame in frames() {
        let mut long = frame.to_vec();
        long.extend_from_slice(&[0, 0, 0]);
        assert_eq!(
            decode_any(&Bytes::from(long)),
            Err(ProtocolError::TrailingBytes(3))
        );
    }
}

#[test]
fn wrong_version_is_refused() {
    for frame in frames() {
        for version in [0, 1, 2, 4, 0xFF] {
            assert_eq!(
                decode_any(&with_byte(&frame, 0, version)),
                Err(ProtocolError::UnsupportedVersion(version))
            );
        }
    }
    // Even a lone version byte says which version it is.
    assert_eq!(
        decode_request(CLUSTER, Bytes::from_static(&[1])),
        Err(ProtocolError::UnsupportedVersion(1))
    );
}

#[test]
fn wrong_cluster_is_refused() {
    for frame in frames() {
        assert_eq!(
            decode_any(&with_byte(&frame, 1, !frame[1])),
            Err(ProtocolError::WrongCluster {
                expected: CLUSTER,
                found: CLUSTER ^ 0xFF,
            })
        );
    }
    let frame = encode_request(CLUSTER + 1, &ClientRequest::Status);
    let err = decode_request(CLUSTER, frame).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::WrongCluster {
            expected: CLUSTER,
            found: CLUSTER + 1,
        }
    );
    assert!(err.to_string().contains("cluster"), "{err}");
}

#[test]
fn unknown_kinds_are_refused() {
    for frame in requests().iter().map(|r| encode_request(CLUSTER, r)) {
        assert_eq!(
            decode_response(CLUSTER, frame.clone()),
            Err(ProtocolError::UnknownKind(frame[9]))
        );
    }
    for frame in responses().iter().map(|r| encode_response(CLUSTER, r)) {
        assert_eq!(
            decode_request(CLUSTER, frame.clone()),
            Err(ProtocolError::UnknownKind(frame[9]))
        );
    }
    let status = encode_request(CLUSTER, &ClientRequest::Status);
    for kind in [0, 6, 0x80, 0x89, 0xFF] {
        let frame = with_byte(&status, 9, kind);
        assert_eq!(
            decode_request(CLUSTER, frame.clone()),
            Err(ProtocolError::UnknownKind(kind))
        );
        assert_eq!(
            decode_response(CLUSTER, frame),
            Err(ProtocolError::UnknownKind(kind))
        );
    }
}

#[test]
fn bad_option_tags_are_refused() {
    let frame = encode_response(
        CLUSTER,
        &ClientResponse::NotLeader {
            leader: None,
            leader_addr: None,
        },
    );
    for (at, what) in [(10, "the leader"), (11, "the leader's address")] {
        for tag in [2, 0xFF] {
            assert_eq!(
                decode_response(CLUSTER, with_byte(&frame, at, tag)),
                Err(ProtocolError::BadOptionTag { what, tag })
            );
        }
    }
    // The status's leader tag sits after id, cluster id, role, term and vote.
    let frame = encode_response(CLUSTER, &ClientResponse::Status(Box::new(status(vec![]))));
    let at = HEADER_BYTES + 8 + 8 + 1 + 8 + 8;
    assert_eq!(frame[at], 1);
    assert!(matches!(
        decode_response(CLUSTER, with_byte(&frame, at, 7)),
        Err(ProtocolError::BadOptionTag { tag: 7, .. })
    ));
}

#[test]
fn bad_roles_and_booleans_are_refused() {
    let one_peer = status(vec![peer(2, "", 5)]);
    let frame = encode_response(CLUSTER, &ClientResponse::Status(Box::new(one_peer)));
    let role_at = HEADER_BYTES + 16;
    assert_eq!(frame[role_at], 3);
    for role in [4, 0xFF] {
        assert_eq!(
            decode_response(CLUSTER, with_byte(&frame, role_at, role)),
            Err(ProtocolError::BadRole(role))
        );
    }
    // The peer (after the fields before the counters, plus the leader's value): id, empty
    // address, matched, next, then `replicating`.
    let peer_at = HEADER_BYTES + BEFORE_PEERS_BYTES + 8;
    let replicating_at = peer_at + 8 + 4 + 8 + 8;
    assert_eq!(frame[replicating_at], 1);
    for (at, what) in [
        (replicating_at, "a peer's replicating flag"),
        (replicating_at + 5, "a peer's active flag"),
        (replicating_at + 6, "a peer's connected flag"),
    ] {
        assert_eq!(
            decode_response(CLUSTER, with_byte(&frame, at, 2)),
            Err(ProtocolError::BadBool { what, value: 2 })
        );
    }
}

#[test]
fn invalid_utf8_is_refused() {
    let frame = encode_response(
        CLUSTER,
        &ClientResponse::Rejected {
            reason: "abc".into(),
        },
    );
    let bad = with_byte(&frame, HEADER_BYTES + 4 + 1, 0xC3);
    assert_eq!(
        decode_response(CLUSTER, bad),
        Err(ProtocolError::InvalidUtf8 { what: "the reason" })
    );
}

fn header_of(kind: u8) -> Vec<u8> {
    let mut v = vec![PROTOCOL_VERSION];
    v.extend_from_slice(&CLUSTER.to_le_bytes());
    v.push(kind);
    v
}

#[test]
fn oversized_lengths_are_refused_before_reading() {
    // A command announcing 4 GiB in a tiny frame.
    let mut v = header_of(KIND_PROPOSE);
    v.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode_request(CLUSTER, Bytes::from(v)),
        Err(ProtocolError::TooLarge {
            what: "the command",
            size: u32::MAX as usize,
            max: MAX_CLIENT_FRAME,
        })
    );
    // Within the limit but beyond the frame: truncated, nothing reserved.
    let mut v = header_of(KIND_APPLIED);
    v.extend_from_slice(&5u64.to_le_bytes());
    v.extend_from_slice(&1000u32.to_le_bytes());
    v.extend_from_slice(b"short");
    assert!(matches!(
        decode_response(CLUSTER, Bytes::from(v)),
        Err(ProtocolError::Truncated {
            needed: 1000,
            available: 5,
            ..
        })
    ));
    // A reason one byte over the text limit.
    let mut v = header_of(KIND_UNKNOWN);
    v.extend_from_slice(&(MAX_STRING as u32 + 1).to_le_bytes());
    v.resize(v.len() + MAX_STRING + 1, b'x');
    assert_eq!(
        decode_response(CLUSTER, Bytes::from(v)),
        Err(ProtocolError::TooLarge {
            what: "the reason",
            size: MAX_STRING + 1,
            max: MAX_STRING,
        })
    );
    // Too many peers; and the largest count with no peers behind it.
    let frame = encode_response(CLUSTER, &ClientResponse::Status(Box::new(status(vec![]))));
    // Everything before the counters and the peer count, plus the leader's value.
    let count_at = HEADER_BYTES + BEFORE_PEERS_BYTES - 4 + 8;
    assert_eq!(frame[count_at..count_at + 4], [0, 0, 0, 0]);
    let mut v = frame.to_vec();
    v[count_at..count_at + 4].copy_from_slice(&(MAX_PEERS as u32 + 1).to_le_bytes());
    assert_eq!(
        decode_response(CLUSTER, Bytes::from(v.clone())),
        Err(ProtocolError::TooLarge {
            what: "the peer count",
            size: MAX_PEERS + 1,
            max: MAX_PEERS,
        })
    );
    v[count_at..count_at + 4].copy_from_slice(&(MAX_PEERS as u32).to_le_bytes());
    assert!(matches!(
        decode_response(CLUSTER, Bytes::from(v)),
        Err(ProtocolError::Truncated { .. })
    ));
    // A frame over the limit is refused whatever it holds.
    let mut v = header_of(KIND_PROPOSE);
    v.resize(MAX_CLIENT_FRAME + 1, 0);
    assert_eq!(
        decode_request(CLUSTER, Bytes::from(v)),
        Err(ProtocolError::TooLarge {
            what: "the frame",
            size: MAX_CLIENT_FRAME + 1,
            max: MAX_CLIENT_FRAME,
        })
    );
}

#[test]
fn the_limits_themselves_are_accepted() {
    let command = Bytes::from(vec![1u8; MAX_CLIENT_FRAME - HEADER_BYTES - 4]);
    let req = ClientRequest::Propose { command };
    let frame = encode_request(CLUSTER, &req);
    assert_eq!(frame.len(), MAX_CLIENT_FRAME);
    assert_eq!(decode_request(CLUSTER, frame).as_ref(), Ok(&req));

    let addr = "a".repeat(MAX_STRING);
    let peers = (0..MAX_PEERS as u64).map(|i| peer(i, "p", i)).collect();
    for resp in [
        ClientResponse::NotLeader {
            leader: Some(1),
            leader_addr: Some(addr),
        },
        ClientResponse::Status(Box::new(status(peers))),
    ] {
        let frame = encode_response(CLUSTER, &resp);
        assert_eq!(decode_response(CLUSTER, frame).as_ref(), Ok(&resp));
    }
}

#[test]
fn errors_read_as_plain_words() {
    let cases = [
        (
            decode_request(CLUSTER, Bytes::new()).unwrap_err(),
            "the frame ends early: the protocol version needs 1 bytes but only 0 are left",
        ),
        (
            ProtocolError::UnsupportedVersion(9),
            "protocol version 9 is not supported (this node speaks version 3)",
        ),
        (
            ProtocolError::WrongCluster {
                expected: 0xAB,
                found: 0xCD,
            },
            "the frame is for cluster 0xcd, but this is cluster 0xab",
        ),
        (
            ProtocolError::UnknownKind(0x42),
            "unknown message kind 0x42",
        ),
    ];
    for (err, text) in cases {
        assert_eq!(err.to_string(), text);
    }
}

// ---- property tests ------------------------------------------------------------------

fn arb_u64() -> impl Strategy<Value = u64> {
    prop_oneof![0..8u64, any::<u64>()]
}

fn arb_bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

fn arb_text() -> impl Strategy<Value = String> {
    // Any characters, control and multi-byte ones included.
    "(?s).{0,24}"
}

fn arb_role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Follower),
        Just(Role::PreCandidate),
        Just(Role::Candidate),
        Just(Role::Leader),
    ]
}

fn arb_peer() -> impl Strategy<Value = PeerReport> {
    (
        arb_u64(),
        arb_text(),
        arb_u64(),
        arb_u64(),
        any::<bool>(),
        any::<u32>(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(arb_sending()),
    )
        .prop_map(
            |(id, address, matched, next, replicating, inflight, active, connected, snapshot)| {
                PeerReport {
                    id,
                    address,
                    matched,
                    next,
                    replicating,
                    inflight,
                    active,
                    connected,
                    snapshot,
                }
            },
        )
}

fn arb_sending() -> impl Strategy<Value = SnapshotSending> {
    (arb_u64(), arb_u64(), arb_u64()).prop_map(|(index, acked, total)| SnapshotSending {
        index,
        acked,
        total,
    })
}

fn arb_snapshot_report() -> impl Strategy<Value = SnapshotReport> {
    (
        vec(arb_u64(), 4),
        proptest::option::of(arb_u64()),
        proptest::option::of(arb_sending()),
        vec(arb_u64(), 6),
    )
        .prop_map(|(a, taking, receiving, b)| SnapshotReport {
            index: a[0],
            term: a[1],
            bytes: a[2],
            age_ms: a[3],
            taking,
            receiving,
            first_index: b[0],
            log_entries_in_memory: b[1],
            log_bytes_in_memory: b[2],
            taken: b[3],
            sent: b[4],
            installed: b[5],
        })
}

fn arb_status() -> impl Strategy<Value = NodeStatus> {
    let core = (
        arb_u64(),
        any::<u64>(),
        arb_role(),
        arb_u64(),
        arb_u64(),
        proptest::option::of(arb_u64()),
        (arb_u64(), arb_u64(), arb_u64(), arb_u64()),
    );
    let counters = vec(arb_u64(), 9);
    let membership = (arb_membership(), proptest::option::of(arb_u64()));
    (
        core,
        vec(arb_peer(), 0..5),
        counters,
        arb_snapshot_report(),
        membership,
    )
        .prop_map(
            |(
                (
                    id,
                    cluster_id,
                    role,
                    term,
                    vote,
                    leader,
                    (commit, applied, last_index, persisted),
                ),
                peers,
                c,
                snapshot,
                (membership, transfer),
            )| NodeStatus {
                id,
                cluster_id,
                role,
                term,
                vote,
                leader,
                commit,
                applied,
                last_index,
                persisted,
                peers,
                leader_changes: c[0],
                proposals: c[1],
                storage_batches: c[2],
                storage_writes: c[3],
                storage_entries: c[4],
                storage_micros: c[5],
                bytes_sent: c[6],
                bytes_received: c[7],
                uptime_ms: c[8],
                snapshot,
                membership,
                transfer,
            },
        )
}

fn arb_change() -> impl Strategy<Value = MemberChange> {
    prop_oneof![
        (arb_u64(), arb_text()).prop_map(|(id, address)| MemberChange::AddLearner { id, address }),
        arb_u64().prop_map(|id| MemberChange::Promote { id }),
        arb_u64().prop_map(|id| MemberChange::Remove { id }),
        (arb_u64(), arb_text()).prop_map(|(id, address)| MemberChange::SetAddress { id, address }),
    ]
}

fn arb_membership() -> impl Strategy<Value = MembershipReport> {
    let role = prop_oneof![
        Just(MemberRole::Voter),
        Just(MemberRole::Learner),
        Just(MemberRole::Joining),
        Just(MemberRole::Leaving),
    ];
    let member = (arb_u64(), role, arb_text()).prop_map(|(id, role, address)| MemberReport {
        id,
        role,
        address,
    });
    (arb_u64(), any::<bool>(), any::<bool>(), vec(member, 0..5)).prop_map(
        |(index, joint, committed, members)| MembershipReport {
            index,
            joint,
            committed,
            members,
        },
    )
}

fn arb_request() -> impl Strategy<Value = ClientRequest> {
    prop_oneof![
        arb_bytes().prop_map(|command| ClientRequest::Propose { command }),
        Just(ClientRequest::Status),
        Just(ClientRequest::Snapshot),
        vec(arb_change(), 0..5).prop_map(|steps| ClientRequest::ChangeMembership { steps }),
        proptest::option::of(arb_u64()).prop_map(|to| ClientRequest::TransferLeader { to }),
    ]
}

fn arb_response() -> impl Strategy<Value = ClientResponse> {
    prop_oneof![
        (arb_u64(), arb_bytes())
            .prop_map(|(index, response)| ClientResponse::Applied { index, response }),
        (
            proptest::option::of(arb_u64()),
            proptest::option::of(arb_text())
        )
            .prop_map(|(leader, leader_addr)| ClientResponse::NotLeader {
                leader,
                leader_addr
            }),
        arb_text().prop_map(|reason| ClientResponse::Unknown { reason }),
        arb_text().prop_map(|reason| ClientResponse::Rejected { reason }),
        arb_status().prop_map(|s| ClientResponse::Status(Box::new(s))),
        (arb_u64(), arb_u64(), arb_u64(), any::<bool>()).prop_map(|(index, term, bytes, new)| {
            ClientResponse::Snapshot(SnapshotDone {
                index,
                term,
                bytes,
                new,
            })
        }),
        arb_membership().prop_map(ClientResponse::Membership),
        (arb_u64(), arb_u64())
            .prop_map(|(leader, term)| ClientResponse::Transferred { leader, term }),
    ]
}

/// The kinds both decoders know, to steer random bodies past the kind check.
const KINDS: [u8; 13] = [
    KIND_PROPOSE,
    KIND_STATUS_REQUEST,
    KIND_SNAPSHOT_REQUEST,
    KIND_CHANGE_MEMBERSHIP,
    KIND_TRANSFER_LEADER,
    KIND_MEMBERSHIP,
    KIND_TRANSFERRED,
    KIND_APPLIED,
    KIND_NOT_LEADER,
    KIND_UNKNOWN,
    KIND_REJECTED,
    KIND_STATUS,
    KIND_SNAPSHOT,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn requests_round_trip(cluster in any::<u64>(), req in arb_request()) {
        let frame = encode_request(cluster, &req);
        prop_assert_eq!(decode_request(cluster, frame.clone()), Ok(req));
        check_canonical(cluster, &frame);
    }

    #[test]
    fn responses_round_trip(cluster in any::<u64>(), resp in arb_response()) {
        let frame = encode_response(cluster, &resp);
        prop_assert_eq!(frame.len(), HEADER_BYTES + response_fields_len(&resp));
        prop_assert_eq!(decode_response(cluster, frame.clone()), Ok(resp));
        check_canonical(cluster, &frame);
        // Truncated anywhere, the frame is refused.
        for len in 0..frame.len() {
            prop_assert!(decode_response(cluster, frame.slice(..len)).is_err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..256)) {
        let frame = Bytes::from(data);
        let named = frame
            .get(1..9)
            .map_or(CLUSTER, |id| u64::from_le_bytes(id.try_into().unwrap()));
        check_canonical(named, &frame);
        check_canonical(CLUSTER, &frame);
    }

    #[test]
    fn random_bodies_never_panic(
        kind in proptest::sample::select(&KINDS[..]),
        body in vec(prop_oneof![3 => 0..4u8, 1 => any::<u8>()], 0..400),
    ) {
        let mut v = header_of(kind);
        v.extend_from_slice(&body);
        check_canonical(CLUSTER, &Bytes::from(v));
    }

    #[test]
    fn mutated_frames_never_panic(
        resp in arb_response(),
        at in any::<prop::sample::Index>(),
        value in any::<u8>(),
    ) {
        let frame = encode_response(CLUSTER, &resp);
        let mutated = with_byte(&frame, at.index(frame.len()), value);
        check_canonical(CLUSTER, &mutated);
    }
}
