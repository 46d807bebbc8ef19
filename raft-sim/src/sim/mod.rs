//! The simulation engine: one thread, virtual time, one seed.

mod churn;
mod clients;
mod faults;
mod snapshots;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::Bytes;
use raft_kv::{KvConfig, KvStore};
use raft_proto_core::{
    Config, Entry, EntryKind, Event, HardState, Input, LogId, Message, Output, Proposal,
    ProposeError, RaftNode, Role,
};

use crate::client::{Client, InFlight, Reply};
use crate::disk::SimDisk;
use crate::faults::{Fault, FaultKinds, FaultSchedule};
use crate::invariants::{Invariants, Violation};
use crate::linearizability::{self, KvInput, Operation, Verdict};
use crate::network::{Fate, Network};
use crate::rng::SimRng;
use crate::trace::{tag, Trace};

/// Nominal length of one tick in microseconds of virtual time.
pub const TICK_US: u64 = 10_000;

/// How a run picks its fault kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultChoice {
    /// These kinds.
    Kinds(FaultKinds),
    /// Swarm testing: the seed picks the kinds.
    Swarm,
}

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed every choice is drawn from.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Length of the faulty phase, in nominal ticks.
    pub ticks: u64,
    /// Which faults to inject.
    pub faults: FaultChoice,
    /// An explicit schedule of discrete faults instead of a random one.
    pub schedule: Option<FaultSchedule>,
    /// Concurrent clients.
    pub clients: usize,
    /// Size of the key space.
    pub keys: usize,
    /// Keep readable trace lines.
    pub trace: bool,
    /// After healing, the cluster must elect a leader and commit a write within this many ticks.
    pub liveness_ticks: u64,
    /// Step budget of the linearizability checker.
    pub checker_steps: u64,
    /// Upper bound of events in one run; reaching it is reported as a failure.
    pub max_events: u64,
}

impl SimConfig {
    /// Defaults for `seed`: 3 nodes, 2,000 ticks, swarm faults, 6 clients on 3 keys.
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            nodes: 3,
            ticks: 2_000,
            faults: FaultChoice::Swarm,
            schedule: None,
            clients: 6,
            keys: 3,
            trace: false,
            liveness_ticks: 300,
            checker_steps: linearizability::DEFAULT_MAX_STEPS,
            max_events: 20_000_000,
        }
    }
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// The fault kinds that were on.
    pub faults: FaultKinds,
    /// Hash of the whole trace.
    pub trace_hash: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual time simulated, in microseconds.
    pub time_us: u64,
    /// Highest term reached.
    pub max_term: u64,
    /// Entries committed.
    pub committed: u64,
    /// Configuration entries among them.
    pub config_entries: u64,
    /// Client operations that completed / whose outcome stayed unknown.
    pub ops_ok: usize,
    /// Operations with unknown outcome.
    pub ops_unknown: usize,
    /// Crashes injected.
    pub crashes: usize,
    /// Safety violations.
    pub violations: Vec<Violation>,
    /// The linearizability verdict.
    pub verdict: Option<Verdict>,
    /// Ticks from healing until a write committed, if it did.
    pub recovery_ticks: Option<u64>,
    /// Readable trace, if kept.
    pub trace: Option<Vec<String>>,
}

impl RunReport {
    /// Whether the run found no problem.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
            && !matches!(self.verdict, Some(Verdict::NotLinearizable { .. }))
            && self.recovery_ticks.is_some()
    }
}

#[derive(Debug)]
enum Ev {
    Tick(usize, u32),
    Deliver {
        from: usize,
        to: usize,
        msg: Message,
    },
    Sync(usize, u32, u64),
    /// Entries read back from node `.0`'s disk for follower `to`.
    Fetched {
        node: usize,
        inc: u32,
        to: u64,
        lo: u64,
        entries: Vec<Entry>,
    },
    /// Node `.0`'s state machine reports entries up to `.2` applied.
    Applied(usize, u32, u64),
    /// Node `node`'s own snapshot at `index` is written out: finish it (or fail it).
    SnapshotStored {
        node: usize,
        inc: u32,
        index: u64,
        fail: bool,
    },
    /// Node `node` carries out a compaction it was asked for.
    Compact {
        node: usize,
        inc: u32,
        through: u64,
    },
    /// A snapshot chunk read back from node `node`'s disk for follower `to`.
    SnapshotRead {
        node: usize,
        inc: u32,
        to: u64,
        snapshot: LogId,
        offset: u64,
        data: Bytes,
        total: u64,
    },
    ClientSend {
        client: usize,
        node: usize,
        seq: u64,
        data: Bytes,
    },
    ClientReply {
        client: usize,
        seq: u64,
        reply: Reply,
    },
    ClientTimeout {
        client: usize,
        seq: u64,
        attempt: u32,
    },
    ClientResend {
        client: usize,
        seq: u64,
        attempt: u32,
    },
    ClientNext(usize),
    Fault(Fault),
    /// The membership operator's next move.
    Churn,
    Heal,
}

struct Queued {
    time: u64,
    order: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.time, self.order) == (o.time, o.order)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.time, o.order).cmp(&(self.time, self.order))
    }
}

struct SimNode {
    raft: Option<RaftNode>,
    config: Config,
    disk: SimDisk,
    kv: KvStore,
    incarnation: u32,
    tick_period: u64,
    sync_busy: bool,
    slow_disk: bool,
    /// Proposals waiting for their log position: request id -> (client, seq).
    requests: BTreeMap<u64, (usize, u64)>,
    /// Accepted proposals by index: (term, client, seq).
    pending: BTreeMap<u64, (u64, usize, u64)>,
    next_request: u64,
    /// Hard states of written but unsynced writes, by seq.
    unsynced_hs: Vec<(u64, HardState)>,
    /// Highest write sequence number reported durable to the node.
    reported_seq: u64,
}

/// One simulation run.
pub struct Sim {
    cfg: SimConfig,
    kinds: FaultKinds,
    rng: SimRng,
    now: u64,
    order: u64,
    queue: BinaryHeap<Queued>,
    nodes: Vec<SimNode>,
    net: Network,
    clients: Vec<Client>,
    history: Vec<Operation>,
    check: Invariants,
    trace: Trace,
    out: Vec<Output>,
    events: u64,
    healed_at: Option<u64>,
    probe_client: Option<usize>,
    recovered_at: Option<u64>,
    crashes: usize,
    stop_issuing: bool,
    /// The membership operator, in runs with membership churn.
    churn: Option<churn::Churn>,
}

impl Sim {
    /// Prepares a run.
    pub fn new(mut cfg: SimConfig) -> Self {
        cfg.nodes = cfg.nodes.clamp(1, 9);
        let mut rng = SimRng::new(cfg.seed);
        // The swarm's draws happen whether the kinds come from it or are given, so that a
        // swarm seed replays exactly with its kinds spelled out (as failure reports print
        // them). Membership churn draws from a stream of its own (on in 40% of swarm seeds).
        let mut churn_rng = SimRng::new(cfg.seed ^ 0x6368_7572_6E5F_7267);
        let churn_drawn = churn_rng.chance(0.4);
        let swarmed = FaultKinds::swarm(&mut rng, churn_drawn);
        let kinds = match cfg.faults {
            FaultChoice::Kinds(k) => k,
            FaultChoice::Swarm => swarmed,
        };
        let n = cfg.nodes;
        let ids: Vec<u64> = (1..=n as u64).collect();
        // With churn, fresh nodes that wait to join (no configuration) run from the start.
        let mut churn = kinds
            .membership
            .then(|| churn::Churn::new(churn_rng, n))
            .flatten();
        let total = churn.as_ref().map_or(n, churn::Churn::total);
        let all_ids: Vec<u64> = (1..=total as u64).collect();
        // Flow-control limits vary by seed too: tiny messages split a log tail across several
        // appends, which is where commit rules are tested hardest.
        let max_message_bytes = [64, 512, 4 << 10][rng.index(3)];
        let max_inflight = [1, 4, 16][rng.index(3)];
        // Both protocol options are exercised: without them elections are far more chaotic.
        let pre_vote = rng.chance(0.6);
        let check_quorum = rng.chance(0.6);
        // Short election timeouts in some seeds: fewer distinct random timeouts make concurrent
        // candidates (and so split votes and racing vote requests) more common.
        let (election_ticks, heartbeat_ticks) = if rng.chance(0.3) { (5, 1) } else { (10, 2) };
        // Small log caches in some seeds: applied entries leave memory quickly and leaders read
        // them back from disk for lagging followers. Small apply backlogs stall applying until
        // the state machine catches up.
        let log_cache_bytes = [0, 512, 8 << 10, 8 << 20][rng.index(4)];
        let max_apply_backlog_bytes = [256, 4 << 10, 16 << 20][rng.index(3)];
        // Aggressive snapshot policies in half the seeds: snapshots every few entries, short
        // kept tails (so lagging followers need InstallSnapshot), small chunks and windows.
        let snapshots = rng.chance(0.5).then(|| {
            (
                [3, 8, 25][rng.index(3)],
                [0, 2, 10][rng.index(3)],
                [16, 100, 4 << 10][rng.index(3)],
                [32, 300, 64 << 10][rng.index(3)],
            )
        });
        let mut nodes = Vec::with_capacity(total);
        for &id in &all_ids {
            let initial = if id <= n as u64 {
                ids.clone()
            } else {
                Vec::new()
            };
            let mut c = Config::new(id, initial);
            c.voter_data = ids
                .iter()
                .filter(|_| id <= n as u64)
                .map(|&v| (v, Bytes::from(format!("n{v}"))))
                .collect();
            c.seed = cfg.seed.wrapping_mul(31).wrapping_add(id);
            c.max_message_bytes = max_message_bytes;
            c.max_inflight_messages = max_inflight;
            c.pre_vote = pre_vote;
            c.election_timeout_ticks = election_ticks;
            c.heartbeat_interval_ticks = heartbeat_ticks;
            c.check_quorum = check_quorum;
            c.max_uncommitted_bytes = 256 << 10;
            c.log_cache_bytes = log_cache_bytes;
            c.max_apply_backlog_bytes = max_apply_backlog_bytes;
            if let Some((every, keep, chunk, inflight)) = snapshots {
                c.snapshot_after_entries = Some(every);
                c.snapshot_after_bytes = None;
                c.compaction_keep_entries = keep;
                c.snapshot_chunk_bytes = chunk;
                c.max_snapshot_inflight_bytes = inflight;
            }
            let tick_period = if kinds.clock_drift {
                rng.range(TICK_US * 90 / 100, TICK_US * 110 / 100)
            } else {
                TICK_US
            };
            let raft = RaftNode::new(c.clone(), Default::default()).ok();
            nodes.push(SimNode {
                raft,
                config: c,
                disk: SimDisk::default(),
                kv: KvStore::new(KvConfig::default()),
                incarnation: 0,
                tick_period,
                sync_busy: false,
                slow_disk: false,
                requests: BTreeMap::new(),
                pending: BTreeMap::new(),
                next_request: 0,
                unsynced_hs: Vec::new(),
                reported_seq: 0,
            });
        }
        let net = Network::new(total, kinds, &mut rng);
        let clients = (0..cfg.clients)
            .map(|c| Client::new(c as u64 + 1, cfg.keys, rng.index(n)))
            .collect();
        let mut sim = Sim {
            kinds,
            rng,
            now: 0,
            order: 0,
            queue: BinaryHeap::new(),
            nodes,
            net,
            clients,
            history: Vec::new(),
            check: Invariants::new(total),
            trace: Trace::new(cfg.trace),
            out: Vec::with_capacity(64),
            events: 0,
            healed_at: None,
            probe_client: None,
            recovered_at: None,
            crashes: 0,
            stop_issuing: false,
            churn: None,
            cfg,
        };
        if let Some(c) = churn.as_mut() {
            let first = c.first_delay();
            sim.at(first, Ev::Churn);
        }
        sim.churn = churn;
        for i in 0..total {
            let first = sim.rng.range(1, sim.nodes[i].tick_period);
            sim.at(first, Ev::Tick(i, 0));
        }
        for c in 0..sim.clients.len() {
            let start = sim.rng.range(0, 20 * TICK_US);
            sim.at(start, Ev::ClientNext(c));
        }
        let duration = sim.cfg.ticks * TICK_US;
        let schedule = match sim.cfg.schedule.clone() {
            Some(s) => s,
            None => FaultSchedule::random(&mut sim.rng, kinds, total, duration, TICK_US),
        };
        for (t, f) in schedule.events {
            if t < duration {
                sim.at(t, Ev::Fault(f));
            }
        }
        sim.at(duration, Ev::Heal);
        sim
    }

    fn at(&mut self, delay: u64, ev: Ev) {
        self.order += 1;
        self.queue.push(Queued {
            time: self.now + delay,
            order: self.order,
            ev,
        });
    }

    /// Runs to the end and reports.
    pub fn run(mut self) -> RunReport {
        let deadline_after_heal = self.cfg.liveness_ticks * TICK_US;
        while let Some(q) = self.queue.pop() {
            self.now = q.time;
            self.events += 1;
            self.handle(q.ev);
            if !self.check.violations().is_empty() {
                break;
            }
            if let Some(h) = self.healed_at {
                if self.recovered_at.is_some() && self.clients.iter().all(|c| c.current.is_none()) {
                    break;
                }
                if self.now > h + deadline_after_heal + 50 * TICK_US {
                    break;
                }
            }
            if self.events >= self.cfg.max_events {
                let detail = format!(
                    "{} events by {:.3}ms with {} queued: a message storm or livelock",
                    self.events,
                    self.now as f64 / 1000.0,
                    self.queue.len()
                );
                self.check.report(self.now, "bounded work", detail);
                break;
            }
            if self.events.is_multiple_of(4096) {
                self.check_log_matching();
            }
        }
        self.check_log_matching();
        self.finish()
    }

    fn check_log_matching(&mut self) {
        let up: Vec<&RaftNode> = self.nodes.iter().filter_map(|n| n.raft.as_ref()).collect();
        self.check.check_log_matching(self.now, &up);
    }

    fn finish(mut self) -> RunReport {
        let now = self.now;
        // Operations still in flight have an unknown outcome (already recorded as such).
        for c in &mut self.clients {
            c.current = None;
        }
        let violations = self.check.violations().to_vec();
        let verdict = if violations.is_empty() {
            match linearizability::check(&self.history, self.cfg.checker_steps) {
                Ok(r) => Some(r.verdict),
                Err(e) => {
                    let mut v = violations.clone();
                    v.push(Violation {
                        time: now,
                        property: "well-formed history",
                        detail: e.to_string(),
                    });
                    return self.report(v, None);
                }
            }
        } else {
            None
        };
        let mut violations = violations;
        if violations.is_empty() && self.recovered_at.is_none() {
            violations.push(Violation {
                time: now,
                property: "liveness after healing",
                detail: format!(
                    "no write committed within {} ticks after all faults healed",
                    self.cfg.liveness_ticks
                ),
            });
        }
        self.report(violations, verdict)
    }

    fn report(self, violations: Vec<Violation>, verdict: Option<Verdict>) -> RunReport {
        let ops_unknown = self.history.iter().filter(|o| o.ret.is_none()).count();
        RunReport {
            seed: self.cfg.seed,
            nodes: self.cfg.nodes,
            faults: self.kinds,
            trace_hash: self.trace.hash(),
            events: self.events,
            time_us: self.now,
            max_term: self
                .nodes
                .iter()
                .filter_map(|n| n.raft.as_ref())
                .map(|r| r.term())
                .max()
                .unwrap_or(0),
            committed: self.check.committed_len(),
            config_entries: self.check.committed_configs(),
            ops_ok: self.history.len() - ops_unknown,
            ops_unknown,
            crashes: self.crashes,
            violations,
            verdict,
            recovery_ticks: match (self.healed_at, self.recovered_at) {
                (Some(h), Some(r)) => Some((r.saturating_sub(h)).div_ceil(TICK_US)),
                _ => None,
            },
            trace: self.trace.lines().map(|l| l.to_vec()),
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Tick(n, inc) => {
                if self.nodes[n].incarnation == inc && self.nodes[n].raft.is_some() {
                    self.step(n, Input::Tick);
                    let p = self.nodes[n].tick_period;
                    self.at(p, Ev::Tick(n, inc));
                }
            }
            Ev::Deliver { from, to, msg } => {
                if self.net.is_blocked(from, to) {
                    return;
                }
                let from_id = from as u64 + 1;
                self.step(to, Input::Receive { from: from_id, msg });
            }
            Ev::Sync(n, inc, upto) => self.sync(n, inc, upto),
            Ev::Fetched {
                node,
                inc,
                to,
                lo,
                entries,
            } => {
                if self.nodes[node].incarnation == inc {
                    self.step(node, Input::EntriesFetched { to, lo, entries });
                }
            }
            Ev::Applied(n, inc, index) => {
                if self.nodes[n].incarnation == inc {
                    self.step(n, Input::Applied { index });
                }
            }
            Ev::SnapshotStored {
                node,
                inc,
                index,
                fail,
            } => self.snapshot_stored(node, inc, index, fail),
            Ev::Compact { node, inc, through } => self.compact(node, inc, through),
            Ev::SnapshotRead {
                node,
                inc,
                to,
                snapshot,
                offset,
                data,
                total,
            } => {
                if self.nodes[node].incarnation == inc {
                    let input = Input::SnapshotRead {
                        to,
                        snapshot,
                        offset,
                        data,
                        total,
                    };
                    self.step(node, input);
                }
            }
            Ev::ClientSend {
                client,
                node,
                seq,
                data,
            } => self.node_receives_request(node, client, seq, data),
            Ev::ClientReply { client, seq, reply } => self.client_reply(client, seq, reply),
            Ev::ClientTimeout {
                client,
                seq,
                attempt,
            } => self.client_timeout(client, seq, attempt),
            Ev::ClientResend {
                client,
                seq,
                attempt,
            } => self.client_resend(client, seq, attempt),
            Ev::ClientNext(c) => self.client_next(c),
            Ev::Fault(f) => self.fault(f),
            Ev::Churn => self.churn_step(),
            Ev::Heal => self.heal(),
        }
    }

    fn step(&mut self, n: usize, input: Input) {
        let Some(raft) = self.nodes[n].raft.as_mut() else {
            return;
        };
        let mut out = std::mem::take(&mut self.out);
        raft.step_into(input, &mut out);
        let raft = self.nodes[n].raft.as_ref().expect("node is up");
        self.check.after_step(self.now, n, raft);
        for o in out.drain(..) {
            self.output(n, o);
        }
        self.out = out;
        let mut up: [Option<&RaftNode>; 9] = [None; 9];
        for (slot, node) in up.iter_mut().zip(&self.nodes) {
            *slot = node.raft.as_ref();
        }
        self.check
            .check_electable_completeness(self.now, &up[..self.nodes.len()]);
        self.check
            .check_last_entry_matches(self.now, n, &up[..self.nodes.len()]);
    }

    fn output(&mut self, n: usize, o: Output) {
        match o {
            Output::Send { to, msg } => self.send(n, to as usize - 1, msg),
            Output::Persist(w) => {
                let node = &mut self.nodes[n];
                node.disk.write(&w);
                if let Some(hs) = w.hard_state {
                    node.unsynced_hs.push((w.seq, hs));
                }
                if !node.sync_busy {
                    self.schedule_sync(n, w.seq);
                }
            }
            Output::Apply { entries } => self.apply(n, entries),
            Output::FetchEntries {
                to,
                lo,
                hi,
                max_bytes,
            } => self.fetch(n, to, lo, hi, max_bytes),
            Output::TakeSnapshot { meta } => self.take_snapshot(n, meta),
            Output::Compact { through } => {
                let inc = self.nodes[n].incarnation;
                let d = self.rng.range(0, 3_000);
                // Reactive nemesis: crash some nodes just before or after they compact.
                if self.kinds.crashes && self.healed_at.is_none() && self.rng.chance(0.1) {
                    let when = self.rng.range(0, 2 * d + 1);
                    self.crash_and_restart(n, when);
                }
                self.at(
                    d,
                    Ev::Compact {
                        node: n,
                        inc,
                        through,
                    },
                );
            }
            Output::ReadSnapshot {
                to,
                snapshot,
                offset,
                max_len,
            } => self.read_snapshot(n, to, snapshot, offset, max_len),
            Output::SnapshotChunk { meta, offset, data } => {
                self.store_snapshot_chunk(n, meta, offset, data)
            }
            Output::InstallSnapshot { seq, meta } => self.install_snapshot(n, seq, meta),
            Output::RestoreSnapshot { meta } => self.restore_snapshot(n, meta),
            Output::Proposed { request, result } => self.proposed(n, request, result),
            Output::ProposalUnknown { id, .. } => {
                self.nodes[n].pending.remove(&id.index);
            }
            Output::MembershipChanged { index, membership } => {
                let id = n + 1;
                self.trace
                    .record(self.now, &[tag("membership"), id as u64, index], || {
                        format!("n{id}: configuration {membership} in force from {index}")
                    });
            }
            Output::Transferring { request, result } => {
                let id = n + 1;
                self.trace
                    .record(self.now, &[tag("transferring"), id as u64, request], || {
                        format!("n{id}: transfer {result:?}")
                    });
            }
            Output::Event(e) => self.event(n, e),
        }
    }

    fn event(&mut self, n: usize, e: Event) {
        let id = n + 1;
        match e {
            Event::RoleChanged { role, term } => {
                self.trace.record(
                    self.now,
                    &[tag("role"), id as u64, role as u64, term],
                    || format!("n{id} becomes {role} in term {term}"),
                );
                if role == Role::Leader {
                    self.on_new_leader(n);
                }
            }
            Event::LeaderChanged { leader, term } => {
                self.trace.record(
                    self.now,
                    &[tag("leader"), id as u64, leader.unwrap_or(0), term],
                    || format!("n{id} sees leader {leader:?} in term {term}"),
                );
            }
            Event::CheckQuorumFailed { term } => {
                self.trace
                    .record(self.now, &[tag("checkquorum"), id as u64, term], || {
                        format!("n{id} steps down: no quorum heard in term {term}")
                    });
            }
            Event::SnapshotSent {
                to,
                index,
                installed,
            } => {
                self.trace.record(
                    self.now,
                    &[tag("snapsent"), id as u64, to, index, u64::from(installed)],
                    || format!("n{id}: snapshot {index} transfer to n{to} ended (installed: {installed})"),
                );
            }
            Event::TransferAborted { to, term } => {
                self.trace.record(
                    self.now,
                    &[tag("transfer-aborted"), id as u64, to, term],
                    || format!("n{id}: transfer to n{to} abandoned in term {term}"),
                );
            }
            Event::RemovedFromConfiguration { term, successor } => {
                self.trace.record(
                    self.now,
                    &[tag("removed"), id as u64, term, successor.unwrap_or(0)],
                    || format!("n{id} steps down, removed (successor {successor:?})"),
                );
            }
            Event::UnknownSender { .. } | Event::InvalidInput { .. } => {
                let text = format!("{e:?}");
                self.trace
                    .record(self.now, &[tag("invalid"), id as u64], || {
                        format!("n{id}: {text}")
                    });
            }
        }
    }

    fn schedule_sync(&mut self, n: usize, upto: u64) {
        let node = &mut self.nodes[n];
        node.sync_busy = true;
        let latency = if node.slow_disk {
            self.rng.range(5_000, 60_000)
        } else {
            self.rng.range(50, 2_500)
        };
        let inc = node.incarnation;
        self.at(latency, Ev::Sync(n, inc, upto));
    }

    fn sync(&mut self, n: usize, inc: u32, upto: u64) {
        let node = &mut self.nodes[n];
        if node.incarnation != inc || node.raft.is_none() {
            return;
        }
        node.sync_busy = false;
        node.disk.sync_up_to(upto);
        self.report_durable(n);
        if let Some(next) = self.nodes[n].disk.last_unsynced_seq() {
            if !self.nodes[n].sync_busy {
                self.schedule_sync(n, next);
            }
        }
    }

    /// Tells node `n` about writes that became durable since the last report (a sync made
    /// them so, or a snapshot's finish or a compaction, which sync everything written before).
    pub(super) fn report_durable(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        let seq = node.disk.durable_seq();
        if seq <= node.reported_seq || node.raft.is_none() {
            return;
        }
        node.reported_seq = seq;
        if let Some(&(_, hs)) = node.unsynced_hs.iter().rev().find(|(s, _)| *s <= seq) {
            self.check.on_durable(n, hs);
        }
        self.nodes[n].unsynced_hs.retain(|(s, _)| *s > seq);
        self.step(n, Input::Persisted { seq });
    }

    fn send(&mut self, from: usize, to: usize, msg: Message) {
        if to >= self.nodes.len() {
            return;
        }
        let fate = self.net.fate(&mut self.rng, from, to);
        let dropped = matches!(fate, Fate::Dropped);
        self.trace.record(
            self.now,
            &[
                tag(msg.kind()),
                from as u64,
                to as u64,
                msg.term(),
                u64::from(dropped),
            ],
            || {
                format!(
                    "n{} -> n{} {}{}",
                    from + 1,
                    to + 1,
                    describe(&msg),
                    if dropped { " (lost)" } else { "" }
                )
            },
        );
        // Reactive nemesis: crash a node right after it sent something while it still has
        // unsynced writes, the moment a promise made before durability would be exposed.
        if self.kinds.crashes && self.healed_at.is_none() && self.nodes[from].disk.has_unsynced() {
            let p = match &msg {
                Message::RequestVoteResponse(r) if r.granted && !r.pre_vote => 0.25,
                Message::AppendEntriesResponse(_) => 0.01,
                _ => 0.002,
            };
            if self.rng.chance(p) {
                self.crash_and_restart(from, 0);
            }
        }
        match fate {
            Fate::Dropped => {}
            Fate::Delivered(d) => self.at(d, Ev::Deliver { from, to, msg }),
            Fate::Duplicated(a, b) => {
                self.at(
                    a,
                    Ev::Deliver {
                        from,
                        to,
                        msg: msg.clone(),
                    },
                );
                self.at(b, Ev::Deliver { from, to, msg });
            }
        }
    }

    /// A leader reads entries back from its disk; the answer comes after a read's latency.
    fn fetch(&mut self, n: usize, to: u64, lo: u64, hi: u64, max_bytes: u64) {
        use raft_proto_core::storage::Storage;
        let node = &self.nodes[n];
        match node.disk.entries_within(lo, hi, max_bytes) {
            Ok(entries) => {
                let got = entries.len() as u64;
                self.trace
                    .record(self.now, &[tag("fetch"), n as u64, to, lo, got], || {
                        format!("n{} reads {got} entries from {lo} back for n{to}", n + 1)
                    });
                let inc = node.incarnation;
                let d = self.rng.range(20, 800);
                self.at(
                    d,
                    Ev::Fetched {
                        node: n,
                        inc,
                        to,
                        lo,
                        entries,
                    },
                );
            }
            Err(e) => self.check_fail("disk reads", format!("n{}: {e}", n + 1)),
        }
    }

    fn apply(&mut self, n: usize, entries: Vec<Entry>) {
        let id = n as u64 + 1;
        self.check.on_apply(self.now, n, id, &entries);
        if let Some(last) = entries.last() {
            // The state machine reports its progress a little later, as a driver's would.
            let inc = self.nodes[n].incarnation;
            let d = self.rng.range(0, 600);
            self.at(d, Ev::Applied(n, inc, last.index));
        }
        for e in entries {
            let node = &mut self.nodes[n];
            let applied = match e.kind {
                EntryKind::Noop | EntryKind::Config => {
                    let _ = node.kv.apply_noop(e.index);
                    None
                }
                EntryKind::Normal => node.kv.apply_bytes(e.index, &e.data).ok(),
            };
            if self.check.wants_digest(e.index) {
                let digest = node.kv.digest();
                self.check.on_state_at(self.now, n, e.index, digest);
            }
            let node = &mut self.nodes[n];
            let waiting = match node.pending.get(&e.index) {
                Some(&(term, client, seq)) if term == e.term => Some((client, seq)),
                _ => None,
            };
            node.pending.remove(&e.index);
            if let (Some((client, seq)), Some(a)) = (waiting, applied) {
                self.reply(client, seq, Reply::Done(a.response));
            }
        }
    }

    fn proposed(&mut self, n: usize, request: u64, result: Result<LogId, ProposeError>) {
        if request > churn::CHURN_REQUEST_BASE {
            let id = n + 1;
            self.trace
                .record(self.now, &[tag("changed"), id as u64, request], || {
                    format!("n{id}: membership change {result:?}")
                });
            return;
        }
        let Some((client, seq)) = self.nodes[n].requests.remove(&request) else {
            return;
        };
        match result {
            Ok(id) => {
                self.nodes[n]
                    .pending
                    .insert(id.index, (id.term, client, seq));
            }
            Err(ProposeError::NotLeader { leader_hint }) => {
                let hint = leader_hint.map(|h| h as usize - 1);
                self.reply(client, seq, Reply::NotLeader(hint));
            }
            Err(_) => self.reply(client, seq, Reply::Busy),
        }
    }

    fn reply(&mut self, client: usize, seq: u64, reply: Reply) {
        let d = self.rng.range(100, 1_500);
        if self.rng.chance(self.net.loss) {
            return;
        }
        self.at(d, Ev::ClientReply { client, seq, reply });
    }

    fn node_receives_request(&mut self, n: usize, client: usize, seq: u64, data: Bytes) {
        let node = &mut self.nodes[n];
        let Some(raft) = node.raft.as_ref() else {
            return;
        };
        if raft.role() != Role::Leader {
            let hint = raft.leader_hint().map(|h| h as usize - 1);
            self.reply(client, seq, Reply::NotLeader(hint));
            return;
        }
        node.next_request += 1;
        let request = node.next_request;
        node.requests.insert(request, (client, seq));
        self.step(n, Input::Propose(Proposal { request, data }));
    }

    fn client_next(&mut self, c: usize) {
        if self.clients[c].current.is_some() {
            return;
        }
        let is_probe = self.probe_client == Some(c);
        if self.stop_issuing && !is_probe {
            return;
        }
        let keys = self.cfg.keys;
        let (cmd, mut record) = self.clients[c].next_op(&mut self.rng, keys, self.now);
        if is_probe {
            // The probe writes, so that its completion proves a commit.
            let key = record.key.clone();
            let value = Bytes::from(format!("probe.{}", self.clients[c].seq));
            record.input = KvInput::Put(value.clone());
            let cmd =
                raft_kv::Command::new(cmd.client_id, cmd.seq, raft_kv::Op::Put { key, value });
            return self.start_op(c, cmd, record);
        }
        self.start_op(c, cmd, record)
    }

    fn start_op(&mut self, c: usize, cmd: raft_kv::Command, record: Operation) {
        let data = match cmd.encode() {
            Ok(d) => d,
            Err(e) => {
                self.check_fail("client command encodes", e.to_string());
                return;
            }
        };
        let hist = self.history.len();
        self.history.push(record);
        let target = self.clients[c].leader_guess;
        self.clients[c].current = Some(InFlight {
            seq: cmd.seq,
            data,
            hist,
            attempt: 0,
            target,
        });
        self.client_send(c);
    }

    fn check_fail(&mut self, property: &'static str, detail: String) {
        self.check.report(self.now, property, detail);
    }
}

/// A one-line description of a message for traces.
fn describe(msg: &Message) -> String {
    match msg {
        Message::RequestVote(m) => format!(
            "{} term={} last={}/{}",
            msg.kind(),
            m.term,
            m.last_log.term,
            m.last_log.index
        ),
        Message::RequestVoteResponse(m) => {
            format!("{} term={} granted={}", msg.kind(), m.term, m.granted)
        }
        Message::AppendEntries(m) => format!(
            "AppendEntries term={} prev={}/{} entries={} commit={}",
            m.term,
            m.prev.term,
            m.prev.index,
            m.entries.len(),
            m.commit
        ),
        Message::AppendEntriesResponse(m) => {
            format!("AppendEntriesResponse term={} {:?}", m.term, m.result)
        }
        Message::Heartbeat(m) => format!("Heartbeat term={} commit={}", m.term, m.commit),
        Message::HeartbeatResponse(m) => format!("HeartbeatResponse term={}", m.term),
        Message::InstallSnapshot(m) => format!(
            "InstallSnapshot term={} snapshot={}/{} offset={} len={} size={}",
            m.term,
            m.meta.last_term,
            m.meta.last_index,
            m.offset,
            m.data.len(),
            m.size
        ),
        Message::InstallSnapshotResponse(m) => format!(
            "InstallSnapshotResponse term={} snapshot={}/{} {:?}",
            m.term, m.snapshot.term, m.snapshot.index, m.result
        ),
        Message::TimeoutNow(m) => format!("TimeoutNow term={}", m.term),
    }
}
