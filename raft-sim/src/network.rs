//! The simulated network: per-message delay, loss, duplication and reordering, and partitions
//! made of blocked directed links.

use crate::faults::{FaultKinds, PartitionKind};
use crate::rng::SimRng;

/// Network behaviour of one run, drawn from the seed for the fault kinds that are on.
#[derive(Debug, Clone)]
pub struct Network {
    n: usize,
    blocked: Vec<bool>,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplication: f64,
    /// Base delay range in microseconds.
    pub delay: (u64, u64),
    /// Probability that a message is held back long enough to be overtaken.
    pub reorder: f64,
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Lost (or blocked by a partition).
    Dropped,
    /// Delivered after this many microseconds.
    Delivered(u64),
    /// Delivered twice, after these delays.
    Duplicated(u64, u64),
}

impl Network {
    /// A network among `n` nodes with the given fault kinds.
    pub fn new(n: usize, kinds: FaultKinds, rng: &mut SimRng) -> Self {
        Network {
            n,
            blocked: vec![false; n * n],
            loss: if kinds.loss {
                rng.range(1, 15) as f64 / 100.0
            } else {
                0.0
            },
            duplication: if kinds.duplication {
                rng.range(1, 8) as f64 / 100.0
            } else {
                0.0
            },
            delay: (100, 1_500),
            reorder: if kinds.reordering {
                rng.range(5, 30) as f64 / 100.0
            } else {
                0.0
            },
        }
    }

    /// Whether messages from `from` to `to` are blocked.
    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked[from * self.n + to]
    }

    /// Decides the fate of one message.
    pub fn fate(&self, rng: &mut SimRng, from: usize, to: usize) -> Fate {
        if self.is_blocked(from, to) || rng.chance(self.loss) {
            return Fate::Dropped;
        }
        let delay = |rng: &mut SimRng| {
            let d = rng.range(self.delay.0, self.delay.1);
            if rng.chance(self.reorder) {
                d + rng.range(1_000, 30_000)
            } else {
                d
            }
        };
        let first = delay(rng);
        if rng.chance(self.duplication) {
            Fate::Duplicated(first, delay(rng))
        } else {
            Fate::Delivered(first)
        }
    }

    /// Forms a partition; `leader` is the current leader's index, if any. Returns a description.
    pub fn partition(
        &mut self,
        kind: PartitionKind,
        leader: Option<usize>,
        rng: &mut SimRng,
    ) -> String {
        let n = self.n;
        match kind {
            PartitionKind::Split => {
                let mut side: Vec<bool> = (0..n).map(|_| rng.chance(0.5)).collect();
                if side.iter().all(|&s| s) || side.iter().all(|&s| !s) {
                    side[rng.index(n)] ^= true;
                }
                for a in 0..n {
                    for b in 0..n {
                        if side[a] != side[b] {
                            self.blocked[a * n + b] = true;
                        }
                    }
                }
                let left: Vec<String> = (0..n)
                    .filter(|&i| side[i])
                    .map(|i| (i + 1).to_string())
                    .collect();
                format!("split {{{}}} from the rest", left.join(","))
            }
            PartitionKind::IsolateLeader => {
                let x = leader.unwrap_or_else(|| rng.index(n));
                for o in 0..n {
                    if o != x {
                        self.blocked[x * n + o] = true;
                        self.blocked[o * n + x] = true;
                    }
                }
                format!("isolate node {}", x + 1)
            }
            PartitionKind::OneWay => {
                let x = leader
                    .filter(|_| rng.chance(0.5))
                    .unwrap_or_else(|| rng.index(n));
                for o in 0..n {
                    if o != x {
                        self.blocked[x * n + o] = true;
                    }
                }
                format!("node {} can receive but not send", x + 1)
            }
            PartitionKind::Random => {
                let mut cut = 0;
                for a in 0..n {
                    for b in 0..n {
                        if a != b && rng.chance(0.5) {
                            self.blocked[a * n + b] = true;
                            cut += 1;
                        }
                    }
                }
                format!("{cut} random one-way links cut")
            }
        }
    }

    /// Blocks (or unblocks) every link to and from node `x`.
    pub fn set_isolated(&mut self, x: usize, isolated: bool) {
        for o in 0..self.n {
            if o != x {
                self.blocked[x * self.n + o] = isolated;
                self.blocked[o * self.n + x] = isolated;
            }
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
    }

    /// Turns off loss, duplication and reordering (for the final liveness phase).
    pub fn calm(&mut self) {
        self.loss = 0.0;
        self.duplication = 0.0;
        self.reorder = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_block_and_heal() {
        let mut rng = SimRng::new(1);
        let mut net = Network::new(5, FaultKinds::NONE, &mut rng);
        assert!(
            matches!(net.fate(&mut rng, 0, 1), Fate::Delivered(d) if (100..1_500).contains(&d))
        );
        net.partition(PartitionKind::IsolateLeader, Some(2), &mut rng);
        assert_eq!(net.fate(&mut rng, 2, 0), Fate::Dropped);
        assert_eq!(net.fate(&mut rng, 0, 2), Fate::Dropped);
        assert!(!net.is_blocked(0, 1));
        net.heal();
        assert!(!net.is_blocked(2, 0));
    }

    #[test]
    fn loss_rate_is_roughly_as_configured() {
        let mut rng = SimRng::new(2);
        let mut net = Network::new(3, FaultKinds::NONE, &mut rng);
        net.loss = 0.2;
        let dropped = (0..10_000)
            .filter(|_| net.fate(&mut rng, 0, 1) == Fate::Dropped)
            .count();
        assert!((1_600..2_400).contains(&dropped), "{dropped}");
    }
}
