//! Crash safety with real processes: a child process (`crash_child`) mutates a database and
//! reports each durable operation on stdout; it is killed with SIGKILL at random moments, and
//! the database is reopened and compared with a model (`MemStorage`) fed the same operations.
//!
//! After each kill the recovered state must be exactly the state after the last operation
//! reported durable, or after the one more operation that was in flight (it may have reached the
//! disk before the kill): never less, never anything else.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use raft_proto_core::storage::{MemStorage, Storage};
use raft_proto_core::RecoveredState;
use raft_storage_redb::RedbStorage;

#[path = "../src/bin/crash_child/workload.rs"]
mod workload;

use workload::{snapshot_byte, Op, CLUSTER, NODE};

const KILLS: usize = 60;

/// What one run of the child printed: operations in order, each with whether it was reported
/// durable, and the `D` lines' summaries.
fn run_child(path: &Path, seed: u64, run_for: Duration) -> Vec<(Op, Option<String>)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_child"))
        .arg(path)
        .arg(seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn crash_child");
    let stdout = child.stdout.take().expect("child stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    std::thread::sleep(run_for);
    if let Ok(Some(status)) = child.try_wait() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        panic!("crash_child exited by itself ({status}): {err}");
    }
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap the child");
    let lines = reader.join().expect("reader thread");
    let mut ops: Vec<(Op, Option<String>)> = Vec::new();
    for line in lines {
        if let Some(rest) = line.strip_prefix("D ") {
            let (op, done) = ops.last_mut().expect("a D line follows an announcement");
            assert!(done.is_none(), "two D lines for {op:?}");
            let summary = rest.split_once(' ').map_or("", |(_seq, s)| s);
            *done = Some(summary.to_string());
        } else if let Some((seq, op)) = Op::parse(&line) {
            assert_eq!(seq as usize, ops.len(), "announcements in order");
            if let Some((prev, None)) = ops.last() {
                panic!("{prev:?} was never reported durable but {op:?} started");
            }
            ops.push((op, None));
        }
        // A line cut short by the kill parses as nothing and is ignored.
    }
    ops
}

/// Everything observable of a store after a restart.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    state: RecoveredState,
    first: u64,
    last: u64,
    snapshot_len: usize,
}

impl Fingerprint {
    fn of<S: Storage>(s: &S, state: RecoveredState) -> Self {
        Fingerprint {
            state,
            first: s
                .first_index()
                .unwrap_or_else(|e| panic!("first_index: {e}")),
            last: s.last_index().unwrap_or_else(|e| panic!("last_index: {e}")),
            snapshot_len: read_snapshot(s).len(),
        }
    }

    fn of_model(model: &MemStorage) -> Self {
        let mut m = model.clone();
        let state = m.recover().expect("model recovers");
        Fingerprint::of(&m, state)
    }
}

fn summary(model: &MemStorage) -> String {
    let last = model.last_index().expect("model last");
    let term = match model
        .entries(last, last + 1)
        .expect("model entries")
        .first()
    {
        Some(e) => e.term,
        None => model
            .snapshot_meta()
            .expect("model meta")
            .map_or(0, |m| m.last_term),
    };
    let hs = model.hard_state().expect("model hard state");
    format!("{last} {term} {} {} {}", hs.term, hs.vote, hs.commit)
}

#[test]
fn killed_writer_loses_nothing_reported_durable() {
    let started = Instant::now();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let path = dir.path().join("crash.redb");
    RedbStorage::create(&path, CLUSTER, NODE)
        .expect("create")
        .close()
        .expect("close");
    let mut model = MemStorage::new();
    let mut rng = fastrand::Rng::with_seed(0x5EED);
    let (mut durable_ops, mut in_flight_kept, mut in_flight_lost) = (0, 0, 0);
    for run in 0..KILLS {
        let run_for = Duration::from_millis(rng.u64(20..=200));
        let ops = run_child(&path, rng.u64(..), run_for);
        let mut pending = None;
        for (op, done) in ops {
            match done {
                Some(reported) => {
                    op.apply(&mut model)
                        .expect("the model accepts what the child did");
                    assert_eq!(
                        reported,
                        summary(&model),
                        "run {run}: the child's report of {op:?}"
                    );
                    durable_ops += 1;
                }
                None => pending = Some(op),
            }
        }
        let mut store = RedbStorage::open(&path, CLUSTER, NODE)
            .unwrap_or_else(|e| panic!("run {run}: reopen after SIGKILL failed: {e}"));
        let got = store
            .recover()
            .unwrap_or_else(|e| panic!("run {run}: recover after SIGKILL failed: {e}"));
        got.validate().expect("the recovered state validates");
        let got = Fingerprint::of(&store, got);
        if got != Fingerprint::of_model(&model) {
            let op = pending.unwrap_or_else(|| {
                panic!("run {run}: recovered {got:?}, expected {model:?} with nothing in flight")
            });
            let mut after = model.clone();
            op.apply(&mut after)
                .expect("the model accepts the in-flight operation");
            assert_eq!(
                got,
                Fingerprint::of_model(&after),
                "run {run}: neither before nor after {op:?}"
            );
            model = after;
            in_flight_kept += 1;
        } else if pending.is_some() {
            in_flight_lost += 1;
        }
        if let Some(meta) = got.state.snapshot {
            let data = read_snapshot(&store);
            let expected: Vec<u8> = (0..data.len() as u64)
                .map(|o| snapshot_byte(meta.last_index, o))
                .collect();
            assert_eq!(data, expected, "run {run}: snapshot data");
        }
        store.close().expect("close");
    }
    eprintln!(
        "{KILLS} kills, {durable_ops} operations reported durable, in-flight operation found \
         durable {in_flight_kept} times and lost {in_flight_lost} times, {:?}",
        started.elapsed()
    );
    assert!(
        durable_ops >= 200,
        "the child made too little progress to test anything"
    );
}

fn read_snapshot<S: Storage>(s: &S) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let chunk = s
            .read_snapshot_chunk(out.len() as u64, 100_000)
            .unwrap_or_else(|e| panic!("read snapshot: {e}"));
        if chunk.is_empty() {
            return out;
        }
        out.extend_from_slice(&chunk);
    }
}
