//! `raftkv member ...` and `raftkv transfer-leader`: the cluster's configuration.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use raft_driver_tokio::protocol::{MemberChange, MemberRole, MembershipReport, NodeStatus};
use raft_driver_tokio::Client;
use raft_proto_core::{NodeId, Role};

use crate::client_args::ClientArgs;

/// `raftkv member ...`.
#[derive(clap::Args, Debug)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub command: MemberCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum MemberCommand {
    /// Show the configuration in force: one line per member (id, role, address), as the
    /// leader sees it.
    List(ListArgs),
    /// Add a node as a learner: it receives the log and does not vote. Start it first with
    /// `raftkv serve --join`.
    AddLearner(AddArgs),
    /// Make a learner a voter (refused until it has caught up with the leader).
    Promote(IdArgs),
    /// Remove a voter or a learner (a removed leader hands over and steps down).
    Remove(IdArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The new node's id.
    #[arg(value_parser = parse_id)]
    pub id: NodeId,
    /// The address it listens on, as IP:PORT.
    pub addr: SocketAddr,
}

#[derive(clap::Args, Debug)]
pub struct IdArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The member's id.
    #[arg(value_parser = parse_id)]
    pub id: NodeId,
}

/// `raftkv transfer-leader [ID]`.
#[derive(clap::Args, Debug)]
pub struct TransferArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// The voter to hand leadership to; without it, the most caught-up voter.
    #[arg(value_parser = parse_id)]
    pub id: Option<NodeId>,
}

fn parse_id(s: &str) -> Result<NodeId, String> {
    let id: NodeId = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a node id (a whole number from 1)"))?;
    if id == 0 {
        return Err("node id 0 is reserved; node ids start at 1".into());
    }
    Ok(id)
}

pub async fn run(args: MemberArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MemberCommand::List(a) => list(a).await,
        MemberCommand::AddLearner(a) => {
            let step = MemberChange::AddLearner {
                id: a.id,
                address: a.addr.to_string(),
            };
            change(&a.client, step).await
        }
        MemberCommand::Promote(a) => change(&a.client, MemberChange::Promote { id: a.id }).await,
        MemberCommand::Remove(a) => change(&a.client, MemberChange::Remove { id: a.id }).await,
    }
}

async fn change(args: &ClientArgs, step: MemberChange) -> anyhow::Result<ExitCode> {
    let client = args.client()?;
    let result = client.change_membership(vec![step]).await;
    client.close().await;
    let m = result.context("the membership change")?;
    print!("{}", members_table(&m));
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let view = best_view(&client).await;
    client.close().await;
    let (addr, status) = view?;
    if status.role != Role::Leader {
        eprintln!(
            "note: no leader answered; this is node {}'s view ({addr}), which may be behind",
            status.id
        );
    }
    print!("{}", members_table(&status.membership));
    if let Some(to) = status.transfer {
        eprintln!("note: leadership is being transferred to node {to}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The leader's status, else the status with the newest configuration.
async fn best_view(client: &Client) -> anyhow::Result<(SocketAddr, NodeStatus)> {
    let mut best: Option<(SocketAddr, NodeStatus)> = None;
    let mut last_error = None;
    for &addr in client.nodes() {
        match client.status(addr).await {
            Ok(s) if s.role == Role::Leader => return Ok((addr, s)),
            Ok(s) => {
                if best
                    .as_ref()
                    .is_none_or(|(_, b)| s.membership.index > b.membership.index)
                {
                    best = Some((addr, s));
                }
            }
            Err(e) => last_error = Some(e),
        }
    }
    match (best, last_error) {
        (Some(b), _) => Ok(b),
        (None, Some(e)) => Err(e).context("no node answered"),
        (None, None) => anyhow::bail!("no node address given"),
    }
}

/// One line per member: `ID ROLE ADDRESS`, then a summary line.
pub fn members_table(m: &MembershipReport) -> String {
    let mut out = format!("{:<6} {:<8} {}\n", "ID", "ROLE", "ADDRESS");
    for p in &m.members {
        let address = if p.address.is_empty() {
            "-"
        } else {
            &p.address
        };
        out += &format!("{:<6} {:<8} {}\n", p.id, p.role.to_string(), address);
    }
    let voters = m.members.iter().filter(|p| p.role != MemberRole::Learner);
    out += &format!(
        "# configuration at index {}{}{}: {} voting, {} learners\n",
        m.index,
        if m.joint { ", joint" } else { "" },
        if m.committed {
            ""
        } else {
            ", not committed yet"
        },
        voters.count(),
        m.with_role(MemberRole::Learner).len()
    );
    out
}

pub async fn transfer(args: TransferArgs) -> anyhow::Result<ExitCode> {
    let client = args.client.client()?;
    let result = client.transfer_leader(args.id).await;
    client.close().await;
    let (leader, term) = result.context("the leadership transfer")?;
    println!("node {leader} leads (term {term})");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_driver_tokio::protocol::MemberReport;

    #[test]
    fn ids_are_checked_in_the_users_words() {
        assert_eq!(parse_id("4"), Ok(4));
        assert!(parse_id("0").unwrap_err().contains("reserved"));
        assert!(parse_id("four").unwrap_err().contains("not a node id"));
        assert!(parse_id("-1").is_err());
    }

    #[test]
    fn the_table_has_one_line_per_member_and_a_summary() {
        let m = MembershipReport {
            index: 12,
            joint: true,
            committed: false,
            members: vec![
                MemberReport {
                    id: 1,
                    role: MemberRole::Leaving,
                    address: "127.0.0.1:7001".into(),
                },
                MemberReport {
                    id: 4,
                    role: MemberRole::Learner,
                    address: String::new(),
                },
            ],
        };
        let t = members_table(&m);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[1]
            .split_whitespace()
            .eq(["1", "leaving", "127.0.0.1:7001"]));
        assert!(lines[2].split_whitespace().eq(["4", "learner", "-"]));
        assert!(lines[3].contains("joint") && lines[3].contains("not committed"));
    }
}
