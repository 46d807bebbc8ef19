//! Running many seeds, in parallel, and collecting the failures.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::sim::{FaultChoice, RunReport, Sim, SimConfig};

/// What to explore.
#[derive(Debug, Clone)]
pub struct ExploreConfig {
    /// First seed (inclusive).
    pub first: u64,
    /// Last seed (exclusive).
    pub end: u64,
    /// Cluster size; `None` alternates 3 and 5 nodes by seed.
    pub nodes: Option<usize>,
    /// Length of each run in ticks.
    pub ticks: u64,
    /// Fault choice for every run.
    pub faults: FaultChoice,
    /// Worker threads.
    pub jobs: usize,
    /// Stop at the first failure.
    pub stop_on_failure: bool,
}

/// Summary of an exploration.
#[derive(Debug, Clone, Default)]
pub struct ExploreSummary {
    /// Runs completed.
    pub runs: u64,
    /// Failed runs (reports), in seed order.
    pub failures: Vec<RunReport>,
    /// Events processed over all runs.
    pub events: u64,
    /// Virtual ticks simulated over all runs.
    pub ticks: u64,
    /// Runs the linearizability checker could not decide within its budget.
    pub undecided: u64,
    /// Slowest recovery after healing, in ticks.
    pub max_recovery_ticks: u64,
    /// The seed of that slowest recovery.
    pub slowest_seed: u64,
    /// Runs with membership churn.
    pub churn_runs: u64,
    /// Configuration entries committed over all runs.
    pub config_entries: u64,
}

/// The cluster size used for `seed`.
pub fn nodes_for(seed: u64, nodes: Option<usize>) -> usize {
    nodes.unwrap_or(if seed.is_multiple_of(2) { 3 } else { 5 })
}

/// Runs every seed of the range; `progress` is called after each run with the number done.
pub fn explore(cfg: &ExploreConfig, progress: &(dyn Fn(u64, &RunReport) + Sync)) -> ExploreSummary {
    let next = AtomicU64::new(cfg.first);
    let stop = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    let summary = Mutex::new(ExploreSummary::default());
    std::thread::scope(|s| {
        for _ in 0..cfg.jobs.max(1) {
            s.spawn(|| loop {
                if cfg.stop_on_failure && stop.load(Ordering::Relaxed) > 0 {
                    return;
                }
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= cfg.end {
                    return;
                }
                let mut sc = SimConfig::new(seed);
                sc.nodes = nodes_for(seed, cfg.nodes);
                sc.ticks = cfg.ticks;
                sc.faults = cfg.faults;
                let report = Sim::new(sc).run();
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                progress(n, &report);
                let mut sum = summary.lock().unwrap_or_else(|e| e.into_inner());
                sum.runs += 1;
                sum.events += report.events;
                sum.ticks += report.time_us / crate::sim::TICK_US;
                if matches!(
                    report.verdict,
                    Some(crate::linearizability::Verdict::Unknown)
                ) {
                    sum.undecided += 1;
                }
                if let Some(t) = report.recovery_ticks {
                    if t > sum.max_recovery_ticks {
                        sum.max_recovery_ticks = t;
                        sum.slowest_seed = report.seed;
                    }
                }
                if report.faults.membership {
                    sum.churn_runs += 1;
                }
                sum.config_entries += report.config_entries;
                if !report.passed() {
                    stop.fetch_add(1, Ordering::Relaxed);
                    sum.failures.push(report);
                }
            });
        }
    });
    let mut sum = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    sum.failures.sort_by_key(|r| r.seed);
    sum
}
