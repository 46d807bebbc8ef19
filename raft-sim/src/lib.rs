//! Deterministic cluster simulator and linearizability checker for the raft engine.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod disk;
pub mod explore;
pub mod faults;
pub mod invariants;
pub mod jepsen;
pub mod linearizability;
pub mod network;
pub mod rng;
pub mod sim;
pub mod trace;

pub use sim::{FaultChoice, RunReport, Sim, SimConfig, TICK_US};
