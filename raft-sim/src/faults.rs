//! Which faults a run injects, and the timed schedule of discrete faults.

use crate::rng::SimRng;

/// The kinds of fault the simulator can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultKinds {
    /// Messages are lost at random.
    pub loss: bool,
    /// Messages are delivered twice at random.
    pub duplication: bool,
    /// Message delays vary widely, so messages overtake each other.
    pub reordering: bool,
    /// Partitions form and heal.
    pub partitions: bool,
    /// Nodes crash (losing unsynced writes, maybe tearing the last) and restart.
    pub crashes: bool,
    /// Disks become slow for a while.
    pub slow_disks: bool,
    /// Nodes tick at different rates.
    pub clock_drift: bool,
    /// The membership changes while the cluster runs (learners added and promoted, voters and
    /// leaders removed, through joint configurations or one voter at a time) and leadership
    /// is transferred.
    pub membership: bool,
}

impl FaultKinds {
    /// Every fault kind on.
    pub const ALL: FaultKinds = FaultKinds {
        loss: true,
        duplication: true,
        reordering: true,
        partitions: true,
        crashes: true,
        slow_disks: true,
        clock_drift: true,
        membership: true,
    };

    /// No fault at all.
    pub const NONE: FaultKinds = FaultKinds {
        loss: false,
        duplication: false,
        reordering: false,
        partitions: false,
        crashes: false,
        slow_disks: false,
        clock_drift: false,
        membership: false,
    };

    /// Names accepted by [`FaultKinds::parse`].
    pub const NAMES: [&'static str; 8] = [
        "loss",
        "duplication",
        "reordering",
        "partitions",
        "crashes",
        "slow-disks",
        "clock-drift",
        "membership",
    ];

    /// Swarm testing: each kind on with probability one half, decided by the seed; membership
    /// churn as the caller drew it (from a stream of its own, so that seeds without churn run
    /// exactly as before it existed).
    pub fn swarm(rng: &mut SimRng, membership: bool) -> FaultKinds {
        FaultKinds {
            loss: rng.chance(0.5),
            duplication: rng.chance(0.5),
            reordering: rng.chance(0.5),
            partitions: rng.chance(0.5),
            crashes: rng.chance(0.5),
            slow_disks: rng.chance(0.5),
            clock_drift: rng.chance(0.5),
            membership,
        }
    }

    /// Parses `all`, `none`, or a comma-separated list of kind names.
    pub fn parse(s: &str) -> Result<FaultKinds, String> {
        match s {
            "all" => return Ok(FaultKinds::ALL),
            "none" => return Ok(FaultKinds::NONE),
            _ => {}
        }
        let mut k = FaultKinds::NONE;
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "loss" => k.loss = true,
                "duplication" => k.duplication = true,
                "reordering" => k.reordering = true,
                "partitions" => k.partitions = true,
                "crashes" => k.crashes = true,
                "slow-disks" => k.slow_disks = true,
                "clock-drift" => k.clock_drift = true,
                "membership" => k.membership = true,
                other => {
                    return Err(format!(
                        "unknown fault kind {other:?} (expected all, none, swarm or a list of: {})",
                        FaultKinds::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(k)
    }

    /// The names of the kinds that are on.
    pub fn describe(&self) -> String {
        let on = [
            self.loss,
            self.duplication,
            self.reordering,
            self.partitions,
            self.crashes,
            self.slow_disks,
            self.clock_drift,
            self.membership,
        ];
        let names: Vec<&str> = FaultKinds::NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(",")
        }
    }
}

/// How a partition splits the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    /// Two groups that cannot talk to each other; the seed picks the members.
    Split,
    /// The current leader (or a random node) cut off from everyone.
    IsolateLeader,
    /// One node cannot send to the others but still receives (one-way).
    OneWay,
    /// Each directed link dropped with probability one half.
    Random,
}

/// A discrete fault at a point of virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Crash node (index into the node list; taken modulo the node count).
    Crash(usize),
    /// Restart a crashed node.
    Restart(usize),
    /// Crash whichever node leads now (a random node if none does).
    CrashLeader,
    /// Power loss: every node crashes at once.
    PowerLoss,
    /// Restart every crashed node.
    RestartAll,
    /// Form a partition.
    Partition(PartitionKind),
    /// Heal every partition.
    Heal,
    /// Cut one node off from everyone.
    Isolate(usize),
    /// Reconnect a node cut off by [`Fault::Isolate`].
    Rejoin(usize),
    /// Make a node's disk slow.
    SlowDisk(usize),
    /// Make a node's disk fast again.
    FastDisk(usize),
}

/// Faults with the virtual time (in microseconds) they happen at.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultSchedule {
    /// The faults, in time order.
    pub events: Vec<(u64, Fault)>,
}

impl FaultSchedule {
    /// A random schedule over `duration` microseconds for the kinds that are on.
    pub fn random(
        rng: &mut SimRng,
        kinds: FaultKinds,
        nodes: usize,
        duration: u64,
        tick: u64,
    ) -> Self {
        let mut events = Vec::new();
        let span = |rng: &mut SimRng, lo_ticks: u64, hi_ticks: u64| {
            rng.range(lo_ticks * tick, hi_ticks * tick)
        };
        if kinds.crashes {
            // Crashes may overlap: several nodes can be down at once.
            let mut t = span(rng, 20, 200);
            while t < duration {
                let down = span(rng, 2, 100);
                match rng.index(10) {
                    0..=5 => {
                        let n = rng.index(nodes);
                        events.push((t, Fault::Crash(n)));
                        events.push((t + down, Fault::Restart(n)));
                    }
                    6..=8 => {
                        events.push((t, Fault::CrashLeader));
                        events.push((t + down, Fault::RestartAll));
                    }
                    _ => {
                        events.push((t, Fault::PowerLoss));
                        events.push((t + down, Fault::RestartAll));
                    }
                }
                t += span(rng, 5, 200);
            }
        }
        if kinds.partitions {
            let mut t = span(rng, 20, 200);
            while t < duration {
                let kind = match rng.index(4) {
                    0 => PartitionKind::Split,
                    1 => PartitionKind::IsolateLeader,
                    2 => PartitionKind::OneWay,
                    _ => PartitionKind::Random,
                };
                events.push((t, Fault::Partition(kind)));
                let dur = span(rng, 10, 200);
                events.push((t + dur, Fault::Heal));
                t += dur + span(rng, 10, 300);
            }
        }
        if kinds.slow_disks {
            let mut t = span(rng, 0, 200);
            while t < duration {
                let n = rng.index(nodes);
                events.push((t, Fault::SlowDisk(n)));
                let dur = span(rng, 10, 300);
                events.push((t + dur, Fault::FastDisk(n)));
                t += dur + span(rng, 10, 300);
            }
        }
        events.sort_by_key(|e| e.0);
        FaultSchedule { events }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_describe() {
        assert_eq!(FaultKinds::parse("all"), Ok(FaultKinds::ALL));
        let k = FaultKinds::parse("loss,crashes").expect("valid");
        assert!(k.loss && k.crashes && !k.partitions);
        assert_eq!(k.describe(), "loss,crashes");
        assert!(FaultKinds::parse("gremlins").is_err());
        assert_eq!(FaultKinds::NONE.describe(), "none");
    }

    #[test]
    fn random_schedule_pairs_faults_with_recoveries() {
        let mut rng = SimRng::new(5);
        let s = FaultSchedule::random(&mut rng, FaultKinds::ALL, 5, 50_000_000, 10_000);
        let crashes = s
            .events
            .iter()
            .filter(|e| matches!(e.1, Fault::Crash(_) | Fault::CrashLeader | Fault::PowerLoss))
            .count();
        let restarts = s
            .events
            .iter()
            .filter(|e| matches!(e.1, Fault::Restart(_) | Fault::RestartAll))
            .count();
        assert!(crashes > 0);
        assert_eq!(crashes, restarts);
        assert!(s.events.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}
