//! A continuous write load for end-to-end tests: writers that put distinct keys until told to
//! stop, recording every acknowledged write, when it was acknowledged and how long it took.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raft_driver_tokio::kv::KvClient;
use raft_driver_tokio::Client;

#[derive(Default)]
struct Record {
    acked: BTreeMap<String, String>,
    /// (when acknowledged, latency), in no particular order.
    acks: Vec<(Instant, Duration)>,
    failures: usize,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What a load did.
pub struct LoadResult {
    pub acked: BTreeMap<String, String>,
    /// Acknowledgement times, sorted, with each write's latency.
    pub acks: Vec<(Instant, Duration)>,
    pub failures: usize,
}

impl Load {
    /// `writers` tasks, each with its own KV session over `client`.
    pub fn start(client: &Client, writers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let record = Arc::new(Mutex::new(Record::default()));
        let tasks = (0..writers)
            .map(|w| {
                let (stop, record) = (stop.clone(), record.clone());
                let mut kv = KvClient::new(client.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("load-{w}-{i:06}");
                        let value = format!("{i}-{}", kv.client_id());
                        let started = Instant::now();
                        let result = kv.put(key.clone(), value.clone()).await;
                        let mut r = record.lock().unwrap();
                        match result {
                            Ok(_) => {
                                r.acks.push((Instant::now(), started.elapsed()));
                                r.acked.insert(key, value);
                            }
                            // The outcome is unknown: not counted as acknowledged.
                            Err(_) => r.failures += 1,
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Load {
            stop,
            record,
            tasks,
        }
    }

    /// Acknowledgements so far.
    pub fn acked_count(&self) -> usize {
        self.record.lock().unwrap().acks.len()
    }

    pub async fn stop(self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let r = std::mem::take(&mut *self.record.lock().unwrap());
        let mut acks = r.acks;
        acks.sort();
        LoadResult {
            acked: r.acked,
            acks,
            failures: r.failures,
        }
    }
}

impl LoadResult {
    /// The longest time within `[from, to]` during which no write was acknowledged.
    pub fn longest_stall(&self, from: Instant, to: Instant) -> Duration {
        self.longest_stall_at(from, to).1
    }

    /// The longest stall within `[from, to]`: when it began and how long it lasted.
    pub fn longest_stall_at(&self, from: Instant, to: Instant) -> (Instant, Duration) {
        let mut last = from;
        let mut longest = (from, Duration::ZERO);
        for &(at, _) in self.acks.iter().filter(|(at, _)| *at >= from && *at <= to) {
            if at - last > longest.1 {
                longest = (last, at - last);
            }
            last = at;
        }
        if to.saturating_duration_since(last) > longest.1 {
            longest = (last, to - last);
        }
        longest
    }

    /// The `q` quantile of the latencies of writes acknowledged within `[from, to]`.
    pub fn latency_quantile(&self, from: Instant, to: Instant, q: f64) -> Duration {
        let mut l: Vec<Duration> = self
            .acks
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, d)| *d)
            .collect();
        if l.is_empty() {
            return Duration::ZERO;
        }
        l.sort();
        let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
        l[i]
    }

    /// Reads every acknowledged key back through `client` and checks its value.
    pub async fn check_all_read_back(&self, client: &Client) {
        let mut kv = KvClient::new(client.clone());
        for (key, value) in &self.acked {
            let got = kv.get(key.clone()).await.unwrap();
            assert_eq!(
                got.as_deref(),
                Some(value.as_bytes()),
                "acknowledged write {key} = {value} lost"
            );
        }
    }
}
