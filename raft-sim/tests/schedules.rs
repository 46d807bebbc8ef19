//! Property: any schedule of discrete faults leaves a correct, linearizable cluster that recovers
//! after healing. A failing schedule shrinks to a short one; proptest keeps it in
//! `schedules.proptest-regressions` beside this file, and `cargo test` replays it first.

use proptest::prelude::*;
use raft_sim::faults::{Fault, FaultKinds, FaultSchedule, PartitionKind};
use raft_sim::{FaultChoice, Sim, SimConfig, TICK_US};

const TICKS: u64 = 800;

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        (0usize..5).prop_map(Fault::Crash),
        (0usize..5).prop_map(Fault::Restart),
        Just(Fault::CrashLeader),
        Just(Fault::PowerLoss),
        Just(Fault::RestartAll),
        prop_oneof![
            Just(PartitionKind::Split),
            Just(PartitionKind::IsolateLeader),
            Just(PartitionKind::OneWay),
            Just(PartitionKind::Random),
        ]
        .prop_map(Fault::Partition),
        Just(Fault::Heal),
        (0usize..5).prop_map(Fault::Isolate),
        (0usize..5).prop_map(Fault::Rejoin),
        (0usize..5).prop_map(Fault::SlowDisk),
        (0usize..5).prop_map(Fault::FastDisk),
    ]
}

fn schedule() -> impl Strategy<Value = FaultSchedule> {
    prop::collection::vec((0..TICKS * TICK_US, fault()), 0..16).prop_map(|mut events| {
        events.sort_by_key(|e| e.0);
        FaultSchedule { events }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn any_fault_schedule_is_survived(
        seed in 0u64..1_000_000,
        five in any::<bool>(),
        s in schedule(),
    ) {
        let mut cfg = SimConfig::new(seed);
        cfg.nodes = if five { 5 } else { 3 };
        cfg.ticks = TICKS;
        // Network faults stay random (from the seed); the discrete faults come from `s`.
        let mut kinds = FaultKinds::ALL;
        kinds.crashes = false;
        kinds.partitions = false;
        cfg.faults = FaultChoice::Kinds(kinds);
        cfg.schedule = Some(s.clone());
        let r = Sim::new(cfg).run();
        prop_assert!(
            r.passed(),
            "schedule {:?} failed: {:?} {:?} recovery {:?}",
            s.events, r.violations, r.verdict, r.recovery_ticks
        );
    }
}
