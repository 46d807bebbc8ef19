mod common;
use common::Cluster;
use raft_proto_core::Role;

#[test]
fn three_nodes_elect_and_commit() {
    let mut c = Cluster::new(3, 1);
    assert!(c.elect(1));
    assert_eq!(c.leaders(), vec![1]);
    c.propose(1, 7, b"hello");
    c.deliver_all();
    c.tick(1);
    c.tick(1);
    c.deliver_all();
    for id in 1..=3 {
        let d = c.applied_data(id);
        assert_eq!(d.len(), 2, "node {id}: noop + hello, got {d:?}");
        assert_eq!(&d[1].2[..], b"hello");
        assert_eq!(c.node(id).commit_index(), 2);
    }
    assert_eq!(c.node(2).role(), Role::Follower);
    assert_eq!(c.node(2).leader_hint(), Some(1));
}
