//! The simulated disk as a [`Storage`] backend: the core's conformance suite, and crashes in the
//! middle of a random mix of trait calls and the simulator's own unsynced writes.

use std::collections::VecDeque;

use bytes::Bytes;
use raft_proto_core::storage::{conformance, MemStorage, Storage};
use raft_proto_core::{Entry, EntryKind, HardState, PersistWrite, RecoveredState, SnapshotMeta};
use raft_sim::disk::SimDisk;
use raft_sim::rng::SimRng;

#[test]
fn sim_disk_passes_the_conformance_suite() {
    conformance::run_all(SimDisk::default, SimDisk::reopen);
}

#[test]
fn sim_disk_passes_the_suite_without_restarts() {
    conformance::run_all(SimDisk::default, |d| d);
}

/// What the trait makes durable survives a crash, so the suite passes when every restart is
/// one (only a snapshot transfer not yet finished may be lost or torn).
#[test]
fn sim_disk_passes_the_suite_when_every_restart_is_a_crash() {
    let mut rng = SimRng::new(7);
    conformance::run_all(SimDisk::default, |mut d| {
        d.crash(&mut rng, true);
        d
    });
}

/// A step not yet durable on the disk, mirrored in the model.
enum Op {
    Write(PersistWrite),
    Begin(SnapshotMeta),
    Chunk(Vec<u8>),
}

fn apply(m: &mut MemStorage, op: &Op) {
    match op {
        Op::Write(w) => m.write(std::slice::from_ref(w)),
        Op::Begin(meta) => m.begin_snapshot(meta.clone()),
        Op::Chunk(c) => m.write_snapshot_chunk(c),
    }
    .expect("the model accepts what the disk accepted");
}

/// The disk and two models: what must survive a crash, and everything written.
struct Harness {
    disk: SimDisk,
    durable: MemStorage,
    ahead: MemStorage,
    pending: VecDeque<Op>,
    seq: u64,
    term: u64,
    receiving: bool,
}

impl Harness {
    /// What a trait call that syncs does to the model first: everything written is durable.
    fn flush(&mut self) {
        while let Some(op) = self.pending.pop_front() {
            apply(&mut self.durable, &op);
        }
    }

    fn snap_last(&self) -> u64 {
        self.ahead
            .snapshot_meta()
            .unwrap()
            .map_or(0, |m| m.last_index)
    }

    /// A write that continues the log the writer sees, sometimes cutting it first.
    fn next_write(&mut self, rng: &mut SimRng) -> PersistWrite {
        if rng.chance(0.2) {
            self.term += 1;
        }
        let last = self.ahead.last_index().unwrap();
        let floor = (self.ahead.first_index().unwrap() - 1).max(self.snap_last());
        let truncate_from =
            (last > floor && rng.chance(0.3)).then(|| rng.range(floor + 1, last + 2));
        let start = truncate_from.unwrap_or(last + 1);
        let n = rng.range(0, 4);
        self.seq += 1;
        PersistWrite {
            seq: self.seq,
            truncate_from,
            entries: (start..start + n)
                .map(|index| Entry {
                    term: self.term,
                    index,
                    kind: EntryKind::Normal,
                    data: Bytes::from(format!("{index}/{}/{}", self.term, self.seq)),
                })
                .collect(),
            hard_state: Some(HardState {
                term: self.term,
                vote: 0,
                commit: self.snap_last(),
            }),
        }
    }

    fn next_meta(&self, rng: &mut SimRng) -> SnapshotMeta {
        let last = self.ahead.last_index().unwrap();
        let last_index = rng.range(self.snap_last().max(1), last + 4);
        let logged = self.ahead.entries(last_index, last_index + 1).unwrap();
        let last_term = match logged.first() {
            Some(e) if rng.chance(0.7) => e.term,
            _ => self.term,
        };
        SnapshotMeta {
            last_index,
            last_term,
            membership: raft_proto_core::Membership::new(
                vec![1, 2, 3],
                Vec::new(),
                vec![10 + last_index % 5],
                Default::default(),
            )
            .expect("a valid membership")
            .into(),
        }
    }

    fn step(&mut self, rng: &mut SimRng) {
        match rng.index(10) {
            0..=3 => {
                let w = self.next_write(rng);
                self.disk.write(&w);
                apply(&mut self.ahead, &Op::Write(w.clone()));
                self.pending.push_back(Op::Write(w));
            }
            4 => {
                let upto = rng.range(self.seq.saturating_sub(3), self.seq + 1);
                self.disk.sync_up_to(upto);
                // Records without a sequence number go along with the writes around them.
                while self
                    .pending
                    .front()
                    .is_some_and(|op| !matches!(op, Op::Write(w) if w.seq > upto))
                {
                    let op = self.pending.pop_front().unwrap();
                    apply(&mut self.durable, &op);
                }
            }
            5 => {
                self.flush();
                let batch: Vec<PersistWrite> = (0..rng.range(1, 3))
                    .map(|_| {
                        let w = self.next_write(rng);
                        self.ahead.write(std::slice::from_ref(&w)).unwrap();
                        w
                    })
                    .collect();
                Storage::write(&mut self.disk, &batch).expect("a continuing batch");
                self.durable.write(&batch).unwrap();
                // A batch that does not continue the log is refused and writes nothing.
                let len = self.disk.durable_len();
                let last = self.ahead.last_index().unwrap();
                let mut bad = batch;
                bad[0].truncate_from = None;
                bad[0].entries = vec![Entry {
                    term: self.term,
                    index: last + 2,
                    kind: EntryKind::Noop,
                    data: Bytes::new(),
                }];
                assert!(Storage::write(&mut self.disk, &bad).is_err());
                assert_eq!(
                    self.disk.durable_len(),
                    len,
                    "a refused batch writes nothing"
                );
            }
            6 => {
                self.flush();
                let through = rng.range(0, self.snap_last() + 2);
                let got = self.disk.compact(through);
                assert_eq!(
                    got.is_ok(),
                    self.ahead.compact(through).is_ok(),
                    "compact {through}"
                );
                if got.is_ok() {
                    self.durable.compact(through).unwrap();
                }
            }
            7 => {
                let meta = self.next_meta(rng);
                self.disk.begin_snapshot(meta.clone()).unwrap();
                apply(&mut self.ahead, &Op::Begin(meta.clone()));
                self.pending.push_back(Op::Begin(meta));
                self.receiving = true;
            }
            8 => {
                let chunk: Vec<u8> = (0..rng.range(0, 40))
                    .map(|_| rng.index(256) as u8)
                    .collect();
                let got = self.disk.write_snapshot_chunk(&chunk);
                assert_eq!(got.is_ok(), self.receiving, "chunk");
                if self.receiving {
                    apply(&mut self.ahead, &Op::Chunk(chunk.clone()));
                    self.pending.push_back(Op::Chunk(chunk));
                }
            }
            _ => {
                let got = self.disk.finish_snapshot();
                assert_eq!(got.is_ok(), self.receiving, "finish");
                if self.receiving {
                    self.flush();
                    self.ahead.finish_snapshot().unwrap();
                    self.durable.finish_snapshot().unwrap();
                    self.receiving = false;
                }
            }
        }
    }

    /// Crashes the disk, recovers it through the trait and checks it against the model.
    fn crash_and_recover(&mut self, rng: &mut SimRng) -> RecoveredState {
        let report = self.disk.crash(rng, true);
        for op in self.pending.drain(..).take(report.survived) {
            apply(&mut self.durable, &op);
        }
        let rec = Storage::recover(&mut self.disk).expect("recoverable");
        assert_eq!(report.torn, self.disk.last_torn_bytes > 0, "{report:?}");
        assert_eq!(rec, self.durable.recover().unwrap(), "{report:?}");
        rec.validate().expect("a valid recovered state");
        reads_agree(&self.disk, &rec);
        reads_agree(&self.durable, &rec);
        // The writer starts again from what survived.
        self.ahead = self.durable.clone();
        self.receiving = false;
        rec
    }
}

/// The trait's reads show the recovered state, and what both backends hold is the same.
fn reads_agree<S: Storage>(s: &S, rec: &RecoveredState) {
    let snap = rec.snapshot.as_ref().map_or(0, |m| m.last_index);
    let last = s.last_index().unwrap();
    assert_eq!(s.hard_state().unwrap(), rec.hard_state);
    assert_eq!(s.snapshot_meta().unwrap(), rec.snapshot);
    assert_eq!(last, rec.entries.last().map_or(snap, |e| e.index));
    let first = s.first_index().unwrap();
    assert!(first <= snap + 1);
    assert_eq!(rec.entries.first().map_or(first, |e| e.index), first);
    assert_eq!(s.entries(first, last + 1).unwrap(), rec.entries);
}

fn whole(s: &impl Storage) -> (u64, u64, Vec<Entry>, Bytes) {
    let (first, last) = (s.first_index().unwrap(), s.last_index().unwrap());
    let data = s.read_snapshot_chunk(0, usize::MAX).unwrap();
    (first, last, s.entries(first, last + 1).unwrap(), data)
}

#[test]
fn crash_and_recover_through_the_trait_agree_with_its_reads() {
    let mut torn = 0;
    for seed in 0..300 {
        let mut rng = SimRng::new(seed);
        let mut h = Harness {
            disk: SimDisk::default(),
            durable: MemStorage::new(),
            ahead: MemStorage::new(),
            pending: VecDeque::new(),
            seq: 0,
            term: 1,
            receiving: false,
        };
        let first = h.next_write(&mut rng);
        Storage::write(&mut h.disk, std::slice::from_ref(&first)).unwrap();
        h.durable.write(std::slice::from_ref(&first)).unwrap();
        h.ahead = h.durable.clone();
        for _ in 0..4 {
            for _ in 0..rng.range(5, 40) {
                h.step(&mut rng);
            }
            let before = h.disk.has_unsynced();
            let rec = h.crash_and_recover(&mut rng);
            torn += usize::from(before && h.disk.last_torn_bytes > 0);
            assert_eq!(whole(&h.disk), whole(&h.durable), "seed {seed}");
            // A clean restart recovers the same.
            let disk = std::mem::take(&mut h.disk).reopen();
            h.disk = disk;
            assert_eq!(Storage::recover(&mut h.disk).unwrap(), rec, "seed {seed}");
            assert_eq!(whole(&h.disk), whole(&h.durable), "seed {seed}");
        }
    }
    assert!(torn > 100, "crashes tore records: {torn}");
}
