//! `raft-sim`: command-line front end of the deterministic cluster simulator.

#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use raft_sim::explore::{explore, ExploreConfig};
use raft_sim::faults::FaultKinds;
use raft_sim::jepsen::{read_jepsen_file, JepsenError};
use raft_sim::linearizability::{check, HistoryError, DEFAULT_MAX_STEPS};
use raft_sim::{FaultChoice, RunReport, Sim, SimConfig};

/// Deterministic Raft cluster simulator.
#[derive(Debug, Parser)]
#[command(name = "raft-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run one seed and print a summary and the trace hash.
    Run {
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Cluster size.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
        nodes: u64,
        /// Length of the faulty phase in ticks.
        #[arg(long, default_value_t = 2_000)]
        ticks: u64,
        /// Fault kinds: all, none, swarm, or a comma-separated list.
        #[arg(long, default_value = "swarm", value_parser = parse_faults)]
        faults: FaultChoice,
        /// Print the trace: one line per message, fault and role change.
        #[arg(long)]
        trace: bool,
    },
    /// Run a range of seeds on all cores and report failures with their replay command.
    Explore {
        /// Seeds as A..B (B exclusive).
        #[arg(long, value_parser = parse_range)]
        seeds: (u64, u64),
        /// Worker threads (default: available cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Cluster size (default: 3 for even seeds, 5 for odd).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=9))]
        nodes: Option<u64>,
        /// Length of the faulty phase of each run in ticks.
        #[arg(long, default_value_t = 2_000)]
        ticks: u64,
        /// Fault kinds: all, none, swarm, or a comma-separated list.
        #[arg(long, default_value = "swarm", value_parser = parse_faults)]
        faults: FaultChoice,
        /// Stop at the first failing seed.
        #[arg(long)]
        stop_on_failure: bool,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Check Jepsen register histories (JSON lines) for linearizability.
    ///
    /// Prints one line per file: `<path>: linearizable|not linearizable|unknown (<ops> ops,
    /// <steps> steps, <ms> ms)`. Exits with status 2 if any file cannot be read or parsed.
    CheckHistory {
        /// History files to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Step budget per file; past it the verdict is `unknown`.
        #[arg(long, default_value_t = DEFAULT_MAX_STEPS)]
        max_steps: u64,
        /// Also print why a history is not linearizable.
        #[arg(long, short)]
        verbose: bool,
    },
}

/// Why one file could not be checked.
#[derive(Debug, thiserror::Error)]
enum CheckFileError {
    #[error(transparent)]
    Read(#[from] JepsenError),
    #[error("{}: malformed history: {source}", .path.display())]
    Malformed { path: PathBuf, source: HistoryError },
}

fn check_file(path: &Path, max_steps: u64, verbose: bool) -> Result<(), CheckFileError> {
    let history = read_jepsen_file(path)?;
    let started = Instant::now();
    let result = check(&history, max_steps).map_err(|source| CheckFileError::Malformed {
        path: path.to_path_buf(),
        source,
    })?;
    let elapsed = started.elapsed();
    println!(
        "{}: {} ({} ops, {} steps, {:.2} ms)",
        path.display(),
        result.verdict.label(),
        history.len(),
        result.steps,
        elapsed.as_secs_f64() * 1000.0
    );
    if verbose {
        if let raft_sim::linearizability::Verdict::NotLinearizable { explanation, .. } =
            &result.verdict
        {
            println!("  {explanation}");
        }
    }
    Ok(())
}

fn check_history(files: &[PathBuf], max_steps: u64, verbose: bool) -> ExitCode {
    let mut failed = false;
    for path in files {
        if let Err(error) = check_file(path, max_steps, verbose) {
            eprintln!("error: {error}");
            failed = true;
        }
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn parse_faults(s: &str) -> Result<FaultChoice, String> {
    if s == "swarm" {
        Ok(FaultChoice::Swarm)
    } else {
        FaultKinds::parse(s).map(FaultChoice::Kinds)
    }
}

fn describe_faults(f: FaultChoice) -> String {
    match f {
        FaultChoice::Swarm => "swarm".to_string(),
        FaultChoice::Kinds(k) => k.describe(),
    }
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("expected a range like 0..1000, got {s:?}"))?;
    let a: u64 = a
        .parse()
        .map_err(|e| format!("bad range start {a:?}: {e}"))?;
    let b: u64 = b.parse().map_err(|e| format!("bad range end {b:?}: {e}"))?;
    if b <= a {
        return Err(format!("empty range {s:?}"));
    }
    Ok((a, b))
}

fn replay_command(r: &RunReport, ticks: u64) -> String {
    format!(
        "cargo run -p raft-sim --release -- run --seed {} --nodes {} --ticks {ticks} --faults {} --trace",
        r.seed,
        r.nodes,
        r.faults.describe()
    )
}

fn print_failure(r: &RunReport, ticks: u64) {
    println!(
        "FAIL seed {} ({} nodes, faults {})",
        r.seed,
        r.nodes,
        r.faults.describe()
    );
    for v in &r.violations {
        println!("  {v}");
    }
    if let Some(raft_sim::linearizability::Verdict::NotLinearizable { explanation, .. }) =
        &r.verdict
    {
        println!("  history not linearizable: {explanation}");
    }
    println!("  replay: {}", replay_command(r, ticks));
}

fn run_one(seed: u64, nodes: u64, ticks: u64, faults: FaultChoice, trace: bool) -> ExitCode {
    let mut cfg = SimConfig::new(seed);
    cfg.nodes = nodes as usize;
    cfg.ticks = ticks;
    cfg.faults = faults;
    cfg.trace = trace;
    let started = Instant::now();
    let r = Sim::new(cfg).run();
    let elapsed = started.elapsed();
    if let Some(lines) = &r.trace {
        let mut out = std::io::stdout().lock();
        for l in lines {
            // A closed pipe (e.g. `| head`) ends the listing quietly.
            if writeln!(out, "{l}").is_err() {
                return ExitCode::SUCCESS;
            }
        }
    }
    println!(
        "seed {} | {} nodes | faults {} | {:.1} s simulated in {} ms | {} events",
        r.seed,
        r.nodes,
        r.faults.describe(),
        r.time_us as f64 / 1e6,
        elapsed.as_millis(),
        r.events
    );
    println!(
        "highest term {} | {} entries committed ({} configurations) | {} client ops ok, {} unknown | {} crashes",
        r.max_term, r.committed, r.config_entries, r.ops_ok, r.ops_unknown, r.crashes
    );
    let verdict = r.verdict.as_ref().map_or("not checked", |v| v.label());
    let recovery = r
        .recovery_ticks
        .map_or("none".to_string(), |t| format!("{t} ticks"));
    println!("history {verdict} | recovery after healing {recovery}");
    println!("trace hash {:016x}", r.trace_hash);
    if r.passed() {
        println!("PASS");
        ExitCode::SUCCESS
    } else {
        print_failure(&r, ticks);
        ExitCode::FAILURE
    }
}

fn explore_many(cfg: ExploreConfig, progress: bool) -> ExitCode {
    let total = cfg.end - cfg.first;
    let bar = if progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds {per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let failures = std::sync::atomic::AtomicU64::new(0);
    let started = Instant::now();
    let sum = explore(&cfg, &|n, r| {
        if !r.passed() {
            let f = failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            bar.set_message(format!("{f} failed (last: seed {})", r.seed));
        }
        bar.set_position(n);
    });
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} seeds ({}..{}, nodes {}, {} ticks, faults {}) in {secs:.1} s: {:.0} seeds/s, {:.0} simulated ticks/s, {:.0} events/s",
        sum.runs,
        cfg.first,
        cfg.end,
        cfg.nodes.map_or("3/5".to_string(), |n| n.to_string()),
        cfg.ticks,
        describe_faults(cfg.faults),
        sum.runs as f64 / secs,
        sum.ticks as f64 / secs,
        sum.events as f64 / secs
    );
    println!(
        "slowest recovery after healing: {} ticks (seed {}); undecided histories: {}",
        sum.max_recovery_ticks, sum.slowest_seed, sum.undecided
    );
    println!(
        "membership churn in {} seeds: {} configuration entries committed",
        sum.churn_runs, sum.config_entries
    );
    for r in &sum.failures {
        print_failure(r, cfg.ticks);
    }
    if sum.failures.is_empty() {
        println!("all {} seeds passed", sum.runs);
        ExitCode::SUCCESS
    } else {
        println!("{} of {} seeds failed", sum.failures.len(), sum.runs);
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            seed,
            nodes,
            ticks,
            faults,
            trace,
        } => run_one(seed, nodes, ticks, faults, trace),
        Command::Explore {
            seeds,
            jobs,
            nodes,
            ticks,
            faults,
            stop_on_failure,
            no_progress,
        } => {
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let cfg = ExploreConfig {
                first: seeds.0,
                end: seeds.1,
                nodes: nodes.map(|n| n as usize),
                ticks,
                faults,
                jobs,
                stop_on_failure,
            };
            explore_many(cfg, !no_progress)
        }
        Command::CheckHistory {
            files,
            max_steps,
            verbose,
        } => check_history(&files, max_steps, verbose),
    }
}
