//! Helper of the crash test (`tests/crash.rs`): opens the database named by its first argument
//! and mutates it forever with a workload seeded by its second argument, announcing each
//! operation on stdout before it starts (`W`/`S`/`C` lines) and after it is durable (`D` line
//! with the new last index, last term and hard state). The test kills it at random moments.

use std::io::Write;
use std::process::ExitCode;

use raft_proto_core::storage::Storage;
use raft_proto_core::{HardState, Index, SnapshotMeta};
use raft_storage_redb::RedbStorage;

mod workload;

use workload::{Op, Rng, CLUSTER, NODE};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(seed)) = (args.get(1), args.get(2).and_then(|s| s.parse().ok())) else {
        eprintln!("usage: crash_child DATABASE SEED");
        return ExitCode::from(2);
    };
    match run(path, seed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash_child: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &str, seed: u64) -> Result<(), Box<dyn std::error::Error>> {
    let mut s = RedbStorage::open(path, CLUSTER, NODE)?;
    let rec = s.recover()?;
    let mut hs = rec.hard_state;
    let mut out = std::io::stdout().lock();
    let mut rng = Rng(seed);
    for seq in 0.. {
        let op = next_op(&s, &mut rng, hs)?;
        writeln!(out, "{}", op.to_line(seq))?;
        out.flush()?;
        op.apply(&mut s)?;
        if let Op::Write { hs: h, .. } = op {
            hs = h;
        }
        let last = s.last_index()?;
        writeln!(
            out,
            "D {seq} {last} {} {} {} {}",
            term_at(&s, last)?,
            hs.term,
            hs.vote,
            hs.commit
        )?;
        out.flush()?;
    }
    Ok(())
}

fn term_at(s: &RedbStorage, index: Index) -> Result<u64, Box<dyn std::error::Error>> {
    if let Some(e) = s.entries(index, index + 1)?.first() {
        return Ok(e.term);
    }
    Ok(s.snapshot_meta()?.map_or(0, |m: SnapshotMeta| m.last_term))
}

fn next_op(
    s: &RedbStorage,
    rng: &mut Rng,
    hs: HardState,
) -> Result<Op, Box<dyn std::error::Error>> {
    let last = s.last_index()?;
    let first = s.first_index()?;
    let covered = s.snapshot_meta()?.map_or(0, |m| m.last_index);
    let roll = rng.below(100);
    // Cut above everything committed or covered, raising the term (a new leader's entries).
    let keep = hs.commit.max(covered).max(first - 1);
    if roll < 6 && last > keep {
        let cut = keep + 1 + rng.below(last - keep);
        let term = hs.term + 1;
        let count = rng.below(20);
        let commit = hs.commit;
        let hs = HardState {
            term,
            vote: 1 + rng.below(5),
            commit,
        };
        return Ok(Op::Write {
            cut: Some(cut),
            first: cut,
            count,
            term,
            hs,
        });
    }
    if roll < 9 && hs.commit > covered && hs.commit >= first {
        let last_term = term_at(s, hs.commit)?;
        let meta = workload::snapshot_meta(hs.commit, last_term);
        return Ok(Op::Snapshot {
            meta,
            len: rng.below(300_000),
        });
    }
    if roll < 13 && covered >= first {
        return Ok(Op::Compact {
            through: covered - rng.below(covered - first + 1),
        });
    }
    if roll < 17 {
        let hs = HardState {
            term: hs.term + 1,
            vote: rng.below(6),
            commit: hs.commit,
        };
        return Ok(Op::Write {
            cut: None,
            first: last + 1,
            count: 0,
            term: hs.term,
            hs,
        });
    }
    let count = 1 + rng.below(64);
    let term = hs.term.max(1);
    let commit = (hs.commit + rng.below(count + 1)).min(last + count);
    let hs = HardState {
        term,
        vote: hs.vote,
        commit: commit.max(hs.commit),
    };
    Ok(Op::Write {
        cut: None,
        first: last + 1,
        count,
        term,
        hs,
    })
}
