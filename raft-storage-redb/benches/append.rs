//! Durable append throughput of `RedbStorage` next to the raw fsync floor of the same disk.
//!
//! Run: `cargo bench -p raft-storage-redb --bench append` (optionally `-- --secs N`, default 3
//! seconds per measurement). Data goes to a temporary directory under the target directory.
//!
//! The floor is a plain loop of a 100-byte append to a file and `File::sync_data` (fdatasync).
//! Each storage batch is one `Storage::write` call with one `PersistWrite` of `batch` entries of
//! 100-byte payloads: one redb write transaction and one durable commit.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_proto_core::storage::Storage;
use raft_proto_core::{Entry, EntryKind, PersistWrite};
use raft_storage_redb::RedbStorage;

const PAYLOAD: usize = 100;

struct Latencies(Vec<Duration>);

impl Latencies {
    fn mean(&self) -> Duration {
        self.0.iter().sum::<Duration>() / self.0.len().max(1) as u32
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0.get(i).copied().unwrap_or_default()
    }
}

fn fsync_floor(dir: &Path, secs: f64) -> std::io::Result<Latencies> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("floor.bin"))?;
    let buf = [0x5au8; PAYLOAD];
    let mut lat = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        lat.push(t.elapsed());
    }
    Ok(Latencies(lat))
}

struct Run {
    lat: Latencies,
    entries: u64,
    elapsed: Duration,
    commits: u64,
}

fn storage_run(dir: &Path, batch: u64, secs: f64) -> Result<Run, Box<dyn std::error::Error>> {
    let mut s = RedbStorage::create(dir.join(format!("batch-{batch}.redb")), 1, 1)?;
    s.recover()?;
    let payload = Bytes::from(vec![0xa5u8; PAYLOAD]);
    let mut next = 1u64;
    let mut lat = Vec::new();
    let commits_before = s.durable_commits();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let entries: Vec<Entry> = (next..next + batch)
            .map(|index| Entry {
                term: 1,
                index,
                kind: EntryKind::Normal,
                data: payload.clone(),
            })
            .collect();
        let w = PersistWrite {
            seq: next,
            entries,
            ..PersistWrite::default()
        };
        let t = Instant::now();
        s.write(&[w])?;
        lat.push(t.elapsed());
        next += batch;
    }
    let elapsed = start.elapsed();
    let commits = s.durable_commits() - commits_before;
    s.close()?;
    Ok(Run {
        lat: Latencies(lat),
        entries: next - 1,
        elapsed,
        commits,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let secs = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    println!("data directory: {}", dir.path().display());
    println!("{secs} s per measurement, {PAYLOAD}-byte payloads\n");

    let mut floor = fsync_floor(dir.path(), secs)?;
    let floor_mean = floor.mean();
    println!(
        "raw fsync floor (100-byte append + fdatasync): {:.0} syncs/s, mean {:.1} us, p50 {:.1} us, p99 {:.1} us\n",
        1.0 / floor_mean.as_secs_f64(),
        us(floor_mean),
        us(floor.percentile(0.5)),
        us(floor.percentile(0.99)),
    );
    println!(
        "{:>5} {:>12} {:>9} {:>10} {:>11} {:>10} {:>10} {:>10} {:>12}",
        "batch",
        "entries/s",
        "MB/s",
        "batches/s",
        "commits/b",
        "mean us",
        "p50 us",
        "p99 us",
        "x fsync"
    );
    for batch in [1u64, 16, 256] {
        let mut r = storage_run(dir.path(), batch, secs)?;
        let batches = r.lat.0.len() as u64;
        let t = r.elapsed.as_secs_f64();
        let mean = r.lat.mean();
        println!(
            "{batch:>5} {:>12.0} {:>9.2} {:>10.0} {:>11.2} {:>10.1} {:>10.1} {:>10.1} {:>12.2}",
            r.entries as f64 / t,
            (r.entries * PAYLOAD as u64) as f64 / t / 1e6,
            batches as f64 / t,
            r.commits as f64 / batches.max(1) as f64,
            us(mean),
            us(r.lat.percentile(0.5)),
            us(r.lat.percentile(0.99)),
            mean.as_secs_f64() / floor_mean.as_secs_f64(),
        );
    }
    println!("\nx fsync: mean batch latency divided by the mean raw fsync latency.");
    Ok(())
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
