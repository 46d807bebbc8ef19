//! `raftkv`: a replicated key-value store on Raft, its client and tools.

mod bench;
mod certs;
mod client_args;
mod commands;
mod demo;
mod members;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc's allocator showed up at about a tenth of a busy node's CPU time (its free-list
// consolidation in particular); mimalloc serves the many small, short-lived allocations of
// streams and messages faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A replicated key-value store on Raft (QUIC + mutual TLS, redb storage).
#[derive(Parser, Debug)]
#[command(name = "raftkv", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node from a config file (flags and RAFTKV_* variables override it).
    Serve(serve::ServeArgs),
    /// Start a local 3-node cluster, write, kill the leader, restart it, check every write.
    Demo(demo::DemoArgs),
    /// Set a key.
    Put(commands::PutArgs),
    /// Read a key (linearizable).
    Get(commands::KeyArgs),
    /// Delete a key.
    Delete(commands::KeyArgs),
    /// Compare-and-swap a key.
    Cas(commands::CasArgs),
    /// Show the status of the nodes.
    Status(commands::StatusArgs),
    /// Make the given nodes take a snapshot now (and compact their logs after it).
    Snapshot(commands::SnapshotArgs),
    /// Show or change the cluster's members: list, add-learner, promote, remove.
    Member(members::MemberArgs),
    /// Hand leadership to another voter (named, or the most caught-up one).
    TransferLeader(members::TransferArgs),
    /// Load-test a cluster.
    Bench(bench::BenchArgs),
    /// Create a cluster CA and node and client certificates.
    Certs(certs::CertsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command {
        builder.worker_threads(args.threads());
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Demo(args) => demo::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Put(args) => commands::put(args).await,
            Command::Get(args) => commands::get(args).await,
            Command::Delete(args) => commands::delete(args).await,
            Command::Cas(args) => commands::cas(args).await,
            Command::Status(args) => commands::status(args).await,
            Command::Snapshot(args) => commands::snapshot(args).await,
            Command::Member(args) => members::run(args).await,
            Command::TransferLeader(args) => members::transfer(args).await,
            Command::Bench(args) => bench::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Certs(args) => certs::run(&args).map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_status(&e)
        }
    }
}

/// Exit statuses: 0 done, 1 failed (unreachable cluster, unreadable files, ...), 2 bad
/// arguments (from the argument parser), 3 refused by the cluster (nothing was changed),
/// 4 outcome unknown (the request may have taken effect: check before retrying).
const EXIT_REFUSED: u8 = 3;
const EXIT_UNKNOWN: u8 = 4;

fn exit_status(e: &anyhow::Error) -> ExitCode {
    use raft_driver_tokio::kv::KvError;
    use raft_driver_tokio::ClientError;
    let client_error = e.chain().find_map(|c| {
        c.downcast_ref::<ClientError>()
            .or_else(|| match c.downcast_ref::<KvError>() {
                Some(KvError::Client(ce)) => Some(ce),
                _ => None,
            })
    });
    match client_error {
        Some(ClientError::Rejected(_)) => ExitCode::from(EXIT_REFUSED),
        Some(ClientError::OutcomeUnknown(_) | ClientError::Timeout { .. }) => {
            ExitCode::from(EXIT_UNKNOWN)
        }
        _ => ExitCode::FAILURE,
    }
}
