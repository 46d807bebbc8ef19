//! The just-in-time linearization search of one key (Wing & Gong, as refined by Lowe).
//!
//! Invocation and response events are kept in a doubly linked list ordered by time. The search
//! walks the list from its head: every invocation it meets before the first response belongs to
//! an operation that may be linearized now (it is *minimal*: every operation that must precede
//! it has been linearized). Linearizing an operation applies it to the model and unlinks both of
//! its events; meeting a response means the operation it completes should already have been
//! linearized, so the search backtracks, relinks the last linearized operation and tries the
//! next candidate after it. The search succeeds once every completed operation is linearized.
//!
//! Reductions, sound together (each only discards linearizations when an equivalent one that
//! the search does explore exists):
//! - **Memoization** (Lowe): a configuration (set of linearized operations, model state, plus
//!   the context of [`canonical`]) is explored once. Sets are bitsets, found through an
//!   incremental Zobrist hash.
//! - **Unknown outcomes are optional** and have no response event: they never force
//!   backtracking, and the search may end with some of them left out.
//! - **Canonical placement of optional operations** ([`canonical`]): an optional operation is
//!   only linearized right before an operation it matters to; never when it would change
//!   nothing, and never when no remaining operation could care ([`Demand`]).
//! - **Interchangeable optional operations** (same action) are linearized in invocation order:
//!   whatever the later one could do, the earlier one could do at the same point.
//! - **Greedy observers**: a completed operation that never changes the state (a read, a failed
//!   compare-and-swap) and may be linearized now is linearized now, as the only choice: moving
//!   it from later in any linearization to here keeps that linearization valid.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::hash::{mix64, BuildPreHashed};
use super::model::{Action, CompiledOp, Value, ABSENT};

/// How the search of one key ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyOutcome {
    /// Every completed operation was linearized.
    Linearizable,
    /// No linearization exists.
    NotLinearizable {
        /// History indices of the longest linearizable prefix met, in linearization order.
        prefix: Vec<usize>,
        /// History index of the completed operation whose response ended that prefix: no
        /// remaining operation could be linearized before it returned.
        blocked: usize,
    },
    /// The step budget ran out first.
    Exhausted,
}

/// Result of searching one key.
#[derive(Debug, Clone)]
pub(crate) struct KeySearch {
    /// The outcome.
    pub(crate) outcome: KeyOutcome,
    /// Steps spent: attempts to apply an operation to the model.
    pub(crate) steps: u64,
}

/// Visited configurations: bitsets stored back to back in one arena, chained by hash.
struct Memo {
    words: usize,
    bits: Vec<u64>,
    states: Vec<Value>,
    /// See [`pending_context`].
    contexts: Vec<u64>,
    /// Index of the previous entry with the same hash (`u32::MAX` ends the chain).
    chain: Vec<u32>,
    heads: HashMap<u64, u32, BuildPreHashed>,
}

const NO_ENTRY: u32 = u32::MAX;

impl Memo {
    fn new(words: usize) -> Self {
        Memo {
            words,
            bits: Vec::new(),
            states: Vec::new(),
            contexts: Vec::new(),
            chain: Vec::new(),
            heads: HashMap::default(),
        }
    }

    fn matches(&self, entry: u32, bits: &[u64], state: Value, context: u64) -> bool {
        let i = entry as usize;
        self.states.get(i) == Some(&state)
            && self.contexts.get(i) == Some(&context)
            && self.bits.get(i * self.words..(i + 1) * self.words) == Some(bits)
    }

    fn push(&mut self, bits: &[u64], state: Value, context: u64, previous: u32) -> u32 {
        // More than 2^32 - 1 entries would not fit in memory anyway; saturating keeps the
        // chain sound (a chain ending early only means a configuration may be explored twice).
        let id = u32::try_from(self.states.len()).unwrap_or(NO_ENTRY);
        self.bits.extend_from_slice(bits);
        self.states.push(state);
        self.contexts.push(context);
        self.chain.push(previous);
        id
    }

    /// Records the configuration; false if it had been recorded before.
    fn insert(&mut self, hash: u64, bits: &[u64], state: Value, context: u64) -> bool {
        match self.heads.get(&hash).copied() {
            Some(head) => {
                let mut entry = head;
                while entry != NO_ENTRY {
                    if self.matches(entry, bits, state, context) {
                        return false;
                    }
                    entry = self.chain.get(entry as usize).copied().unwrap_or(NO_ENTRY);
                }
                let id = self.push(bits, state, context, head);
                if let Entry::Occupied(mut e) = self.heads.entry(hash) {
                    e.insert(id);
                }
                true
            }
            None => {
                let id = self.push(bits, state, context, NO_ENTRY);
                self.heads.insert(hash, id);
                true
            }
        }
    }
}

/// The event list: node 0 is the head sentinel, nodes `1..=events` are events in time order,
/// the last node is the tail sentinel.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The operation (index into the compiled ops) of each event node.
    op: Vec<usize>,
    /// Whether each event node is a response.
    is_return: Vec<bool>,
    call_node: Vec<usize>,
    ret_node: Vec<Option<usize>>,
    tail: usize,
}

const HEAD: usize = 0;

impl Events {
    fn new(ops: &[CompiledOp]) -> Self {
        // (time, kind, op): at equal times invocations sort before responses, so operations
        // that touch the same instant are treated as concurrent.
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call, 0, i));
            if let Some(ret) = op.ret {
                events.push((ret, 1, i));
            }
        }
        events.sort_unstable();
        let tail = events.len() + 1;
        let mut list = Events {
            next: (1..=tail + 1).collect(),
            prev: (0..=tail).map(|i| i.saturating_sub(1)).collect(),
            op: vec![0; tail + 1],
            is_return: vec![false; tail + 1],
            call_node: vec![0; ops.len()],
            ret_node: vec![None; ops.len()],
            tail,
        };
        for (pos, &(_, kind, op)) in events.iter().enumerate() {
            let node = pos + 1;
            list.op[node] = op;
            list.is_return[node] = kind == 1;
            if kind == 1 {
                list.ret_node[op] = Some(node);
            } else {
                list.call_node[op] = node;
            }
        }
        list
    }

    fn unlink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        self.prev[n] = node;
    }

    /// Removes both events of `op` (undone by [`Events::restore`], strictly last-in first-out).
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        if let Some(node) = self.ret_node[op] {
            self.unlink(node);
        }
    }

    fn restore(&mut self, op: usize) {
        if let Some(node) = self.ret_node[op] {
            self.relink(node);
        }
        self.relink(self.call_node[op]);
    }
}

#[inline]
fn state_hash(state: Value) -> u64 {
    mix64(u64::from(state) ^ 0x5bd1_e995_0000_0000)
}

#[inline]
fn bit_is_set(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

#[inline]
fn flip_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] ^= 1 << (i % 64);
}

/// The part of a configuration, beyond (linearized set, state), that the rest of the search
/// depends on: when the last linearized operation `i` is optional, which one it is and the state
/// before it (see [`canonical`]); 0 otherwise.
#[inline]
fn pending_context(op: &CompiledOp, i: usize, before: Value) -> u64 {
    if op.optional() {
        ((i as u64 + 1) << 32) | u64::from(before)
    } else {
        0
    }
}

/// What the operations not yet linearized still need from the register, per value: used to
/// skip optional operations that no remaining operation could care about.
struct Demand {
    /// Per value: remaining reads of it and compare-and-swaps expecting it.
    observers: Vec<u32>,
    /// Per value: remaining failed compare-and-swaps expecting it (they need the state changed
    /// away from it).
    failed_cas: Vec<u32>,
}

impl Demand {
    fn new(ops: &[CompiledOp]) -> Self {
        let values = ops
            .iter()
            .map(|op| match op.action {
                Action::Read(v) | Action::Write(v) | Action::CasFailed { expected: v } => v,
                Action::Cas { expected, new } => expected.max(new),
            })
            .max()
            .map_or(1, |max| max as usize + 1);
        let mut demand = Demand {
            observers: vec![0; values],
            failed_cas: vec![0; values],
        };
        for op in ops {
            demand.adjust(op.action, true);
        }
        demand
    }

    /// Counts `action` as still to be linearized (`pending`) or as linearized.
    fn adjust(&mut self, action: Action, pending: bool) {
        let slot = match action {
            Action::Read(v) | Action::Cas { expected: v, .. } => &mut self.observers[v as usize],
            Action::CasFailed { expected } => &mut self.failed_cas[expected as usize],
            Action::Write(_) => return,
        };
        if pending {
            *slot += 1;
        } else {
            *slot -= 1;
        }
    }

    /// Whether some remaining operation could be the one an optional operation taking the
    /// state from `state` to `next_state` matters to (see [`canonical`]): one that needs
    /// `next_state`, or a failed compare-and-swap that needs the state to leave `state`.
    fn wants(&self, state: Value, next_state: Value) -> bool {
        self.observers[next_state as usize] > 0 || self.failed_cas[state as usize] > 0
    }
}

/// Whether linearizing op `i` next, taking the state from `state` to `next_state`, keeps the
/// linearization in canonical form; `last` is the last linearized op and the state before it.
///
/// Any linearization can be rewritten, without breaking real-time order or the model, into one
/// where every unknown-outcome (optional) operation `u` matters to the operation `x` right after
/// it. The rewrites: drop `u` if it leaves the state unchanged; drop `u` if `x` has the same
/// effect with or without it (e.g. `x` overwrites it); swap `u` and `x` if `x` could equally have
/// gone first (moving an optional op later, or a completed op earlier past an operation that
/// never returns, respects real time). Between two optional operations the swap is only done
/// when it puts their actions in ascending order, so the rewriting terminates (each step removes
/// an operation, moves an optional one later, or removes an inversion). The search only explores
/// canonical linearizations, which is why the memo also records the last optional operation.
/// An optional operation is not even tried when no remaining operation could be the one it
/// matters to ([`Demand`]): in a register, only a read of the value it leaves, a
/// compare-and-swap expecting that value, or a failed compare-and-swap expecting the value it
/// replaces can depend on it.
#[inline]
fn canonical(
    ops: &[CompiledOp],
    demand: &Demand,
    last: Option<(usize, Value)>,
    i: usize,
    state: Value,
    next_state: Value,
) -> bool {
    let op = &ops[i];
    if op.optional() && (next_state == state || !demand.wants(state, next_state)) {
        return false;
    }
    let Some((u, before)) = last else {
        return true;
    };
    let pending = &ops[u];
    if !pending.optional() {
        return true;
    }
    let Some(without) = op.action.apply(before) else {
        // Only possible because of `u`: canonical.
        return true;
    };
    if without == next_state {
        // `u` makes no difference to `x`: drop `u`.
        return false;
    }
    let swapped = pending.action.apply(without) == Some(next_state);
    !(swapped && (!op.optional() || pending.action > op.action))
}

/// Whether an action can never change the state.
#[inline]
fn observes_only(action: Action) -> bool {
    matches!(action, Action::Read(_) | Action::CasFailed { .. })
}

/// One linearized operation on the search stack.
#[derive(Debug, Clone, Copy)]
struct Linearized {
    /// The operation.
    op: usize,
    /// The state before it.
    before: Value,
    /// Whether it was the configuration's only choice (a greedy observer): when it is undone,
    /// the configuration below it is exhausted too.
    forced: bool,
}

/// The search of one key.
struct Search<'a> {
    ops: &'a [CompiledOp],
    budget: u64,
    steps: u64,
    events: Events,
    demand: Demand,
    /// For an optional op, the previous optional op (in invocation order) with the same action:
    /// it must be linearized first.
    earlier_twin: Vec<Option<usize>>,
    zobrist: Vec<u64>,
    bits: Vec<u64>,
    bits_hash: u64,
    state: Value,
    memo: Memo,
    /// Completed operations not linearized yet.
    required: usize,
    stack: Vec<Linearized>,
    /// The deepest prefix met at a response, kept incrementally: the current stack agrees with
    /// its first `shared` entries, so recording a new deepest prefix costs only the entries that
    /// changed (linear in pushes overall, not quadratic).
    deepest: Vec<usize>,
    shared: usize,
    blocked: Option<usize>,
}

/// The step budget ran out.
struct Exhausted;

impl<'a> Search<'a> {
    fn new(ops: &'a [CompiledOp], budget: u64) -> Self {
        let n = ops.len();
        let mut earlier_twin: Vec<Option<usize>> = vec![None; n];
        let mut last_with_action: HashMap<Action, usize> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            if op.optional() {
                earlier_twin[i] = last_with_action.insert(op.action, i);
            }
        }
        let words = n.div_ceil(64).max(1);
        let mut search = Search {
            ops,
            budget,
            steps: 0,
            events: Events::new(ops),
            demand: Demand::new(ops),
            earlier_twin,
            zobrist: (0..n as u64).map(|i| mix64(i.wrapping_add(1))).collect(),
            bits: vec![0; words],
            bits_hash: 0,
            state: ABSENT,
            memo: Memo::new(words),
            required: ops.iter().filter(|op| !op.optional()).count(),
            stack: Vec::with_capacity(n),
            deepest: Vec::new(),
            shared: 0,
            blocked: None,
        };
        let initial = state_hash(ABSENT) ^ mix64(0);
        search.memo.insert(initial, &search.bits, ABSENT, 0);
        search
    }

    /// Applies op `i` to the current state, counting a step.
    fn apply(&mut self, i: usize) -> Result<Option<Value>, Exhausted> {
        if self.steps >= self.budget {
            return Err(Exhausted);
        }
        self.steps += 1;
        Ok(self.ops[i].action.apply(self.state))
    }

    /// Whether op `i` may be linearized now: in invocation order among its twins, applicable
    /// (giving `next_state`) and canonical.
    fn allowed(&self, i: usize, next_state: Value) -> bool {
        let last = self.stack.last().map(|l| (l.op, l.before));
        canonical(self.ops, &self.demand, last, i, self.state, next_state)
    }

    fn in_twin_order(&self, i: usize) -> bool {
        self.earlier_twin[i].is_none_or(|twin| bit_is_set(&self.bits, twin))
    }

    /// Linearizes op `i` (taking the state to `next_state`) unless that configuration was
    /// explored before; returns whether it did.
    fn push(&mut self, i: usize, next_state: Value, forced: bool) -> bool {
        let op = &self.ops[i];
        flip_bit(&mut self.bits, i);
        let next_hash = self.bits_hash ^ self.zobrist[i];
        let context = pending_context(op, i, self.state);
        let key = next_hash ^ state_hash(next_state) ^ mix64(context);
        if !self.memo.insert(key, &self.bits, next_state, context) {
            flip_bit(&mut self.bits, i);
            return false;
        }
        self.bits_hash = next_hash;
        self.stack.push(Linearized {
            op: i,
            before: self.state,
            forced,
        });
        self.state = next_state;
        self.events.lift(i);
        self.demand.adjust(op.action, false);
        if !op.optional() {
            self.required -= 1;
        }
        true
    }

    /// Undoes the last linearization.
    fn pop(&mut self) -> Option<Linearized> {
        let last = self.stack.pop()?;
        self.shared = self.shared.min(self.stack.len());
        let i = last.op;
        self.state = last.before;
        flip_bit(&mut self.bits, i);
        self.bits_hash ^= self.zobrist[i];
        self.events.restore(i);
        self.demand.adjust(self.ops[i].action, true);
        if !self.ops[i].optional() {
            self.required += 1;
        }
        Some(last)
    }

    /// Records the current stack as the deepest prefix if it is, with `blocked` the op whose
    /// response stopped it.
    fn record(&mut self, blocked: usize) {
        if self.blocked.is_none() || self.stack.len() > self.deepest.len() {
            self.deepest.truncate(self.shared);
            self.deepest
                .extend(self.stack[self.shared..].iter().map(|l| l.op));
            self.shared = self.stack.len();
            self.blocked = Some(blocked);
        }
    }

    /// The first greedy observer among the current candidates, with the state it leaves.
    fn greedy_candidate(&mut self) -> Result<Option<(usize, Value)>, Exhausted> {
        let mut node = self.events.next[HEAD];
        while node != self.events.tail && !self.events.is_return[node] {
            let i = self.events.op[node];
            if !self.ops[i].optional() && observes_only(self.ops[i].action) {
                if let Some(next_state) = self.apply(i)? {
                    if self.allowed(i, next_state) {
                        return Ok(Some((i, next_state)));
                    }
                }
            }
            node = self.events.next[node];
        }
        Ok(None)
    }

    fn run(&mut self) -> Result<KeyOutcome, Exhausted> {
        // `None`: a new configuration was just entered; `Some(node)`: resume trying the
        // candidates of the current configuration from `node`.
        let mut resume: Option<usize> = None;
        loop {
            if self.required == 0 {
                return Ok(KeyOutcome::Linearizable);
            }
            let mut node = match resume {
                Some(node) => node,
                None => {
                    if let Some((i, next_state)) = self.greedy_candidate()? {
                        if self.push(i, next_state, true) {
                            continue;
                        }
                        // The only choice leads to an explored configuration: exhausted.
                        match self.backtrack() {
                            Some(next) => {
                                resume = Some(next);
                                continue;
                            }
                            None => return Ok(self.refuted()),
                        }
                    }
                    self.events.next[HEAD]
                }
            };
            // Try the candidates from `node` on.
            resume = None;
            let mut pushed = false;
            while node != self.events.tail && !self.events.is_return[node] {
                let i = self.events.op[node];
                node = self.events.next[node];
                if !self.in_twin_order(i) {
                    continue;
                }
                if let Some(next_state) = self.apply(i)? {
                    if self.allowed(i, next_state) && self.push(i, next_state, false) {
                        pushed = true;
                        break;
                    }
                }
            }
            if pushed {
                continue;
            }
            // A response (or, defensively, the end of the list): this configuration is
            // exhausted.
            if node != self.events.tail {
                self.record(self.events.op[node]);
            }
            match self.backtrack() {
                Some(next) => resume = Some(next),
                None => return Ok(self.refuted()),
            }
        }
    }

    /// Undoes linearizations until one whose configuration has candidates left; returns the
    /// node to resume from, or `None` when the initial configuration is exhausted.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let last = self.pop()?;
            if !last.forced {
                return Some(self.events.next[self.events.call_node[last.op]]);
            }
        }
    }

    fn refuted(&self) -> KeyOutcome {
        KeyOutcome::NotLinearizable {
            prefix: self.deepest.iter().map(|&i| self.ops[i].index).collect(),
            blocked: self.blocked.map_or(0, |i| self.ops[i].index),
        }
    }
}

/// Searches for a linearization of `ops` (all of one key, sorted by invocation time), spending at
/// most `budget` steps.
pub(crate) fn search(ops: &[CompiledOp], budget: u64) -> KeySearch {
    if ops.iter().all(CompiledOp::optional) {
        // Every operation may be left out: the empty linearization works.
        return KeySearch {
            outcome: KeyOutcome::Linearizable,
            steps: 0,
        };
    }
    let mut search = Search::new(ops, budget);
    let outcome = search.run().unwrap_or(KeyOutcome::Exhausted);
    KeySearch {
        outcome,
        steps: search.steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_tells_configurations_apart_even_on_hash_collisions() {
        let mut memo = Memo::new(2);
        assert!(memo.insert(7, &[1, 0], 3, 0));
        assert!(!memo.insert(7, &[1, 0], 3, 0));
        // Same hash, different set / state / context: all new.
        assert!(memo.insert(7, &[0, 1], 3, 0));
        assert!(memo.insert(7, &[1, 0], 4, 0));
        assert!(memo.insert(7, &[1, 0], 3, 9));
        assert!(!memo.insert(7, &[0, 1], 3, 0));
        assert!(!memo.insert(7, &[1, 0], 3, 9));
    }

    #[test]
    fn events_lift_and_restore_in_stack_order() {
        let op = |call, ret| CompiledOp {
            action: Action::Write(2),
            call,
            ret,
            index: 0,
        };
        let ops = [op(0, Some(10)), op(5, None), op(10, Some(20))];
        let mut events = Events::new(&ops);
        let order = |events: &Events| {
            let mut seen = Vec::new();
            let mut node = events.next[HEAD];
            while node != events.tail {
                seen.push((events.op[node], events.is_return[node]));
                node = events.next[node];
            }
            seen
        };
        let all = order(&events);
        // At equal times the invocation comes first: ops 0 and 2 are concurrent.
        assert_eq!(
            all,
            vec![(0, false), (1, false), (2, false), (0, true), (2, true)]
        );
        events.lift(0);
        events.lift(1);
        assert_eq!(order(&events), vec![(2, false), (2, true)]);
        events.restore(1);
        events.restore(0);
        assert_eq!(order(&events), all);
    }
}
