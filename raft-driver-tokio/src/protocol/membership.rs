//! Membership in the client protocol: the changes a client asks for, the configuration a node
//! reports, and their encoding.
//!
//! A change request is a u32 count of steps (at most [`MAX_CHANGE_STEPS`]), each a tag byte
//! (1 add a learner, 2 promote, 3 remove, 4 set an address) then the node id and, for tags 1
//! and 4, the address as text. A membership report is the index of the entry holding it, the
//! joint and committed flags, then a u32 count of members (at most [`MAX_PEERS`]), each its id,
//! a role byte (0 voter, 1 learner, 2 joining voter, 3 leaving voter) and its address as text.

use bytes::{BufMut, BytesMut};
use raft_proto_core::{Index, NodeId};

use super::{put_bytes, put_len, ProtocolError, Reader, MAX_PEERS};

/// Most steps one change request may carry.
pub const MAX_CHANGE_STEPS: usize = 64;

/// One step of a membership change, as a client asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// Add a node as a learner (it receives the log and does not vote), reachable at
    /// `address` (`host:port`, the address it listens on for peers and clients).
    AddLearner {
        /// The new node's id.
        id: NodeId,
        /// Its address.
        address: String,
    },
    /// Make a learner a voter (refused until it has caught up).
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// Remove a voter or a learner.
    Remove {
        /// The member.
        id: NodeId,
    },
    /// Record a member's new address.
    SetAddress {
        /// The member.
        id: NodeId,
        /// Its new address.
        address: String,
    },
}

/// What part a member plays in a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRole {
    /// Votes (in both sets of a joint configuration).
    Voter,
    /// Receives the log, does not vote.
    Learner,
    /// Votes in the new set of a joint configuration only: being added.
    Joining,
    /// Votes in the old set of a joint configuration only: being removed.
    Leaving,
}

impl std::fmt::Display for MemberRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
            MemberRole::Joining => "joining",
            MemberRole::Leaving => "leaving",
        })
    }
}

/// One member of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberReport {
    /// The node.
    pub id: NodeId,
    /// Its part.
    pub role: MemberRole,
    /// Its address as recorded in the configuration (empty if none was recorded).
    pub address: String,
}

/// A configuration as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MembershipReport {
    /// Index of the log entry (or snapshot) that holds it (0: the initial configuration, not
    /// recorded yet).
    pub index: Index,
    /// Whether it is a joint configuration (a change of several voters in progress).
    pub joint: bool,
    /// Whether the node knows it committed.
    pub committed: bool,
    /// Its members, sorted by id.
    pub members: Vec<MemberReport>,
}

impl MembershipReport {
    /// The report of `m`, held at `index`, with addresses from the configuration's data.
    pub fn of(index: Index, committed: bool, m: &raft_proto_core::Membership) -> Self {
        let members = m
            .members()
            .into_iter()
            .map(|id| {
                let (new, old) = (m.voters().contains(&id), m.outgoing().contains(&id));
                let role = match (new, old, m.is_joint()) {
                    (true, true, _) | (true, false, false) => MemberRole::Voter,
                    (true, false, true) => MemberRole::Joining,
                    (false, true, _) => MemberRole::Leaving,
                    (false, false, _) => MemberRole::Learner,
                };
                let address = m
                    .data(id)
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .unwrap_or_default()
                    .to_string();
                MemberReport { id, role, address }
            })
            .collect();
        MembershipReport {
            index,
            joint: m.is_joint(),
            committed,
            members,
        }
    }

    /// The ids of members with `role`.
    pub fn with_role(&self, role: MemberRole) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|m| m.role == role)
            .map(|m| m.id)
            .collect()
    }
}

const TAG_ADD_LEARNER: u8 = 1;
const TAG_PROMOTE: u8 = 2;
const TAG_REMOVE: u8 = 3;
const TAG_SET_ADDRESS: u8 = 4;

pub(super) fn changes_len(steps: &[MemberChange]) -> usize {
    4 + steps
        .iter()
        .map(|s| match s {
            MemberChange::AddLearner { address, .. } | MemberChange::SetAddress { address, .. } => {
                1 + 8 + 4 + address.len()
            }
            MemberChange::Promote { .. } | MemberChange::Remove { .. } => 1 + 8,
        })
        .sum::<usize>()
}

pub(super) fn put_changes(buf: &mut BytesMut, steps: &[MemberChange]) {
    put_len(buf, steps.len());
    for s in steps {
        match s {
            MemberChange::AddLearner { id, address } => {
                buf.put_u8(TAG_ADD_LEARNER);
                buf.put_u64_le(*id);
                put_bytes(buf, address.as_bytes());
            }
            MemberChange::Promote { id } => {
                buf.put_u8(TAG_PROMOTE);
                buf.put_u64_le(*id);
            }
            MemberChange::Remove { id } => {
                buf.put_u8(TAG_REMOVE);
                buf.put_u64_le(*id);
            }
            MemberChange::SetAddress { id, address } => {
                buf.put_u8(TAG_SET_ADDRESS);
                buf.put_u64_le(*id);
                put_bytes(buf, address.as_bytes());
            }
        }
    }
}

pub(super) fn read_changes(r: &mut Reader) -> Result<Vec<MemberChange>, ProtocolError> {
    let count = r.count("the step count", MAX_CHANGE_STEPS)?;
    let mut steps = Vec::with_capacity(count.min(r.remaining() / 9));
    for _ in 0..count {
        let step = match r.u8("a step's kind")? {
            TAG_ADD_LEARNER => MemberChange::AddLearner {
                id: r.u64("a step's node id")?,
                address: r.string("a step's address")?,
            },
            TAG_PROMOTE => MemberChange::Promote {
                id: r.u64("a step's node id")?,
            },
            TAG_REMOVE => MemberChange::Remove {
                id: r.u64("a step's node id")?,
            },
            TAG_SET_ADDRESS => MemberChange::SetAddress {
                id: r.u64("a step's node id")?,
                address: r.string("a step's address")?,
            },
            other => return Err(ProtocolError::UnknownStep(other)),
        };
        steps.push(step);
    }
    Ok(steps)
}

fn role_byte(role: MemberRole) -> u8 {
    match role {
        MemberRole::Voter => 0,
        MemberRole::Learner => 1,
        MemberRole::Joining => 2,
        MemberRole::Leaving => 3,
    }
}

pub(super) fn membership_len(m: &MembershipReport) -> usize {
    8 + 1
        + 1
        + 4
        + m.members
            .iter()
            .map(|p| 8 + 1 + 4 + p.address.len())
            .sum::<usize>()
}

pub(super) fn put_membership(buf: &mut BytesMut, m: &MembershipReport) {
    buf.put_u64_le(m.index);
    buf.put_u8(u8::from(m.joint));
    buf.put_u8(u8::from(m.committed));
    put_len(buf, m.members.len());
    for p in &m.members {
        buf.put_u64_le(p.id);
        buf.put_u8(role_byte(p.role));
        put_bytes(buf, p.address.as_bytes());
    }
}

pub(super) fn read_membership(r: &mut Reader) -> Result<MembershipReport, ProtocolError> {
    let index = r.u64("the configuration's index")?;
    let joint = r.bool("the joint flag")?;
    let committed = r.bool("the committed flag")?;
    let count = r.count("the member count", MAX_PEERS)?;
    let mut members = Vec::with_capacity(count.min(r.remaining() / 13));
    for _ in 0..count {
        let id = r.u64("a member's id")?;
        let role = match r.u8("a member's role")? {
            0 => MemberRole::Voter,
            1 => MemberRole::Learner,
            2 => MemberRole::Joining,
            3 => MemberRole::Leaving,
            other => return Err(ProtocolError::BadMemberRole(other)),
        };
        let address = r.string("a member's address")?;
        members.push(MemberReport { id, role, address });
    }
    Ok(MembershipReport {
        index,
        joint,
        committed,
        members,
    })
}
