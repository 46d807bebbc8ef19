//! `raftkv bench`: a closed-loop load generator. Each client is a KV session with one request
//! in flight; latencies after the warm-up go into HDR histograms, and the nodes' storage
//! counters before and after show how many entries each fsync carried.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use raft_driver_tokio::kv::KvClient;
use raft_driver_tokio::protocol::NodeStatus;
use raft_driver_tokio::Client;
use raft_kv::MAX_VALUE_BYTES;
use raft_proto_core::Role;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How many error messages are kept to show at the end.
const KEPT_ERRORS: usize = 5;
/// The progress line.
const BAR: &str = "{spinner} [{elapsed_precise}] {msg}";
/// Progress refresh interval.
const TICK: Duration = Duration::from_millis(200);

/// Flags of `raftkv bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub client: crate::client_args::ClientArgs,
    /// concurrent clients (each a KvClient session doing one request at a time)
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// QUIC connections shared by the clients (round-robin); default min(clients, 8)
    #[arg(long)]
    pub connections: Option<usize>,
    /// value size in bytes
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// number of distinct keys
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// run for this many seconds (unless --count is given)
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// total number of requests instead of a duration
    #[arg(long)]
    pub count: Option<u64>,
    /// fraction of reads (0.0 = writes only, 1.0 = reads only)
    #[arg(long, default_value_t = 0.0)]
    pub reads: f64,
    /// warm-up seconds excluded from the figures
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// print one machine-readable JSON line with the results at the end
    #[arg(long)]
    pub json: bool,
    /// no progress bar
    #[arg(long)]
    pub quiet: bool,
}

/// What the workers share.
struct Shared {
    warm_end: Instant,
    deadline: Option<Instant>,
    count: Option<u64>,
    keys: u64,
    reads: f64,
    value: Bytes,
    issued: AtomicU64,
    done: AtomicU64,
    errors: AtomicU64,
}

/// One worker's figures after the warm-up.
struct Tally {
    hist: Histogram<u64>,
    errors: u64,
    last_finish: Option<Instant>,
    messages: Vec<String>,
}

/// SplitMix64: a cheap, decent generator for picking keys.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn seconds(what: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("--{what} {s} is not a valid duration"))
}

fn validate(args: &BenchArgs) -> anyhow::Result<usize> {
    let clients = args.clients;
    ensure!(clients >= 1, "--clients must be at least 1");
    let connections = args.connections.unwrap_or(clients.min(8));
    if !(1..=clients).contains(&connections) {
        bail!("--connections must be between 1 and --clients ({clients})");
    }
    if !(0.0..=1.0).contains(&args.reads) {
        bail!("--reads must be between 0.0 and 1.0, not {}", args.reads);
    }
    if args.value_size > MAX_VALUE_BYTES {
        bail!("--value-size must be at most {MAX_VALUE_BYTES} bytes");
    }
    ensure!(args.keys >= 1, "--keys must be at least 1");
    ensure!(args.duration > 0.0, "--duration must be positive");
    ensure!(args.count != Some(0), "--count must be at least 1");
    seconds("duration", args.duration)?;
    seconds("warmup", args.warmup)?;
    Ok(connections)
}

/// Each node's status, or why it could not be had.
type Statuses = Vec<Result<NodeStatus, String>>;

/// Asks every node for its status, concurrently; failures become messages.
async fn poll(client: &Client, nodes: &[SocketAddr]) -> Statuses {
    let tasks: Vec<_> = nodes
        .iter()
        .map(|&addr| {
            let client = client.clone();
            tokio::spawn(async move { client.status(addr).await.map_err(|e| e.to_string()) })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap_or_else(|e| Err(e.to_string())));
    }
    out
}

/// Polls the nodes until one of them knows a leader, or until `timeout`.
async fn wait_for_leader(client: &Client, nodes: &[SocketAddr], timeout: Duration) -> Statuses {
    let give_up = Instant::now() + timeout;
    loop {
        let statuses = poll(client, nodes).await;
        let leader = statuses
            .iter()
            .flatten()
            .any(|s| s.role == Role::Leader || s.leader.is_some());
        if leader || Instant::now() >= give_up {
            for (addr, s) in nodes.iter().zip(&statuses) {
                if let Err(e) = s {
                    eprintln!("warning: no status from {addr} (ignored): {e}");
                }
            }
            if !leader {
                eprintln!("warning: no node reports a leader after {timeout:?}; starting anyway");
            }
            return statuses;
        }
        tokio::time::sleep(TICK).await;
    }
}

async fn worker(index: usize, mut kv: KvClient, shared: Arc<Shared>) -> Tally {
    let mut rng = SplitMix((index as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut t = Tally {
        hist: histogram(),
        errors: 0,
        last_finish: None,
        messages: Vec::new(),
    };
    loop {
        if let Some(count) = shared.count {
            if shared.issued.fetch_add(1, Ordering::Relaxed) >= count {
                break;
            }
        }
        let sent = Instant::now();
        if shared.deadline.is_some_and(|d| sent >= d) {
            break;
        }
        let key = Bytes::from(format!("bench-{:012}", rng.next() % shared.keys));
        let outcome = if rng.unit() < shared.reads {
            kv.get(key).await.map(drop)
        } else {
            kv.put(key, shared.value.clone()).await.map(drop)
        };
        let finished = Instant::now();
        let measured = sent >= shared.warm_end && shared.deadline.is_none_or(|d| finished <= d);
        shared.done.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(()) if measured => {
                let micros = u64::try_from((finished - sent).as_micros()).unwrap_or(u64::MAX);
                t.hist.saturating_record(micros.max(1));
                t.last_finish = Some(finished);
            }
            Ok(()) => {}
            Err(e) => {
                t.errors += u64::from(measured);
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if t.messages.len() < KEPT_ERRORS {
                    t.messages.push(e.to_string());
                }
                // Do not spin on requests refused at once (overload, misconfiguration).
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    t
}

/// Latencies in microseconds, 1 us to 60 s, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Runs the benchmark and prints its results.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let connections = validate(&args)?;
    let pools = (0..connections)
        .map(|_| args.client.client())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let nodes = args.client.nodes.clone();
    let timeout = Duration::from_millis(args.client.timeout_ms.max(1));
    let before = wait_for_leader(&pools[0], &nodes, timeout).await;

    let start = Instant::now();
    let warm_end = start + seconds("warmup", args.warmup)?;
    let deadline = match args.count {
        Some(_) => None,
        None => Some(warm_end + seconds("duration", args.duration)?),
    };
    let shared = Arc::new(Shared {
        warm_end,
        deadline,
        count: args.count,
        keys: args.keys,
        reads: args.reads,
        value: Bytes::from(vec![b'v'; args.value_size]),
        issued: AtomicU64::new(0),
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    // The storage counters are read again once the warm-up is over.
    let snapshot = {
        let (client, nodes) = (pools[0].clone(), nodes.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(warm_end).await;
            poll(&client, &nodes).await
        })
    };
    let mut workers = JoinSet::new();
    for i in 0..args.clients {
        let kv = KvClient::new(pools[i % connections].clone());
        workers.spawn(worker(i, kv, shared.clone()));
    }

    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(ProgressStyle::with_template(BAR)?);
    let mut ticker = tokio::time::interval(TICK);
    let (mut last_at, mut last_done) = (start, 0u64);
    let mut tallies = Vec::with_capacity(args.clients);
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                Some(tally) => tallies.push(tally?),
                None => break,
            },
            _ = ticker.tick() => {
                let now = Instant::now();
                let done = shared.done.load(Ordering::Relaxed);
                let rate = (done - last_done) as f64 / (now - last_at).as_secs_f64().max(1e-3);
                (last_at, last_done) = (now, done);
                let phase = if now < warm_end { "warm-up" } else { "measuring" };
                let errors = shared.errors.load(Ordering::Relaxed);
                bar.set_message(format!("{phase}: {done} ops, {rate:.0} ops/s, {errors} errors"));
                bar.tick();
            }
        }
    }
    bar.finish_and_clear();
    let ended = Instant::now();

    let mut hist = histogram();
    let (mut measured_errors, mut last_finish, mut messages) = (0u64, None, Vec::new());
    for t in tallies {
        hist.add(&t.hist)?;
        measured_errors += t.errors;
        last_finish = last_finish.max(t.last_finish);
        messages.extend(t.messages);
    }
    let errors = shared.errors.load(Ordering::Relaxed);
    let ok = shared.done.load(Ordering::Relaxed) - errors;
    let measured = (deadline.or(last_finish).unwrap_or(ended) - warm_end).as_secs_f64();
    let ops_per_sec = hist.len() as f64 / measured.max(1e-6);
    let [p50, p90, p99, p999] = [0.5, 0.9, 0.99, 0.999].map(|q| ms(hist.value_at_quantile(q)));
    let (max, n) = (ms(hist.max()), hist.len());
    let (clients, value_size, reads) = (args.clients, args.value_size, args.reads);
    println!(
        "clients {clients}, connections {connections}, value size {value_size} B, keys {}, \
         reads {:.0}%",
        args.keys,
        reads * 100.0
    );
    let warmup = args.warmup;
    println!("measured:   {measured:.2} s (after {warmup:.2} s warm-up)");
    println!("requests:   {n} ok, {measured_errors} errors ({ok} ok, {errors} errors in all)");
    println!("throughput: {ops_per_sec:.1} ops/s");
    println!(
        "latency:    p50 {p50:.3} ms  p90 {p90:.3} ms  p99 {p99:.3} ms  p99.9 {p999:.3} ms  \
         max {max:.3} ms"
    );
    messages.sort();
    messages.dedup();
    for m in messages.iter().take(KEPT_ERRORS) {
        println!("error:      {m}");
    }

    let from = snapshot.await?;
    let after = poll(&pools[0], &nodes).await;
    println!("nodes (storage counters since the warm-up; one batch = one fsync):");
    let mut leader_batch_entries_avg = None;
    for (i, addr) in nodes.iter().enumerate() {
        let base = from[i].as_ref().ok().or(before[i].as_ref().ok());
        let now = match &after[i] {
            Ok(s) => s,
            Err(e) => {
                println!("  {addr}: no status: {e}");
                continue;
            }
        };
        let delta = |f: fn(&NodeStatus) -> u64| f(now).saturating_sub(base.map_or(0, f));
        let batches = delta(|s| s.storage_batches);
        let entries = delta(|s| s.storage_entries);
        let per_batch = entries as f64 / batches.max(1) as f64;
        let write_ms = ms(delta(|s| s.storage_micros)) / batches.max(1) as f64;
        if now.role == Role::Leader && batches > 0 {
            leader_batch_entries_avg = Some(per_batch);
        }
        let (id, role) = (now.id, now.role.to_string());
        println!(
            "  {addr} node {id} {role:<13} batches {batches:>8}  entries {entries:>9}  \
             entries/batch {per_batch:>7.2}  avg write {write_ms:.3} ms"
        );
    }
    if args.json {
        let leader = leader_batch_entries_avg.map_or("null".to_string(), |v| format!("{v:.2}"));
        println!(
            "{{\"clients\":{clients},\"connections\":{connections},\"value_size\":{value_size},\
             \"reads\":{reads},\"ops_per_sec\":{ops_per_sec:.1},\"p50_ms\":{p50:.3},\
             \"p90_ms\":{p90:.3},\"p99_ms\":{p99:.3},\"p999_ms\":{p999:.3},\"max_ms\":{max:.3},\
             \"requests\":{n},\"errors\":{errors},\"leader_batch_entries_avg\":{leader}}}"
        );
    }
    for p in &pools {
        p.close().await;
    }
    ensure!(ok > 0, "every request failed ({errors} errors)");
    ensure!(n > 0, "nothing completed after the warm-up (see --warmup)");
    Ok(())
}
