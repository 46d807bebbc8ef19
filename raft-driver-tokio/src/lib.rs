//! # raft-driver-tokio
//!
//! A tokio runtime for [`raft_proto_core`]: it owns a `RaftNode` in one task, carries its
//! outputs to a QUIC transport (quinn, mutual TLS with a cluster CA), to a storage thread that
//! group-commits every pending write in one transaction, and to an apply task that runs a
//! pluggable [`StateMachine`] and answers clients.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod frame;
pub mod kv;
pub mod metrics;
mod node;
pub mod protocol;
pub mod state_machine;
pub mod tls;
mod transport;

pub use client::{Client, ClientError, ClientOptions};
pub use node::{Node, NodeBuilder, NodeError, NodeHandle, NodeOptions, RunningNode, StorageStats};
pub use state_machine::StateMachine;
