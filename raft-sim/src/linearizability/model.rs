//! The register model, compiled for the search.
//!
//! Each key is an independent register. Before searching a key, its values are interned to small
//! integers (`0` = absent) and every operation is turned into an [`Action`]: a partial function
//! on the register state that fails when the recorded output is impossible in that state.

use std::collections::HashMap;

use bytes::Bytes;

use super::{KvInput, KvOutput, Operation};

/// An interned register value; [`ABSENT`] stands for "no value".
pub(crate) type Value = u32;

/// The interned value of an absent register.
pub(crate) const ABSENT: Value = 0;

/// What one operation does to the register, given what it was observed to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Action {
    /// A read that returned this value: only possible in that state, changes nothing.
    Read(Value),
    /// An unconditional write (put, or delete as a write of [`ABSENT`]).
    Write(Value),
    /// A compare-and-swap that took effect: only possible when the state equals `expected`.
    Cas {
        /// The value the register must hold.
        expected: Value,
        /// The value it then holds.
        new: Value,
    },
    /// A compare-and-swap that completed without effect: only possible when the state is
    /// anything but `expected`.
    CasFailed {
        /// The value the register must not hold.
        expected: Value,
    },
}

impl Action {
    /// The state after this action, or `None` if the action cannot happen in `state`.
    #[inline]
    pub(crate) fn apply(self, state: Value) -> Option<Value> {
        match self {
            Action::Read(v) => (state == v).then_some(state),
            Action::Write(v) => Some(v),
            Action::Cas { expected, new } => (state == expected).then_some(new),
            Action::CasFailed { expected } => (state != expected).then_some(state),
        }
    }
}

/// One operation of a single key, ready for the search.
#[derive(Debug, Clone)]
pub(crate) struct CompiledOp {
    /// What the operation does.
    pub(crate) action: Action,
    /// Invocation time.
    pub(crate) call: u64,
    /// Response time; `None` for an unknown outcome (the operation is optional and never
    /// forces anything to happen before it).
    pub(crate) ret: Option<u64>,
    /// Index of the operation in the checked history.
    pub(crate) index: usize,
}

impl CompiledOp {
    /// Whether the operation has an unknown outcome, so a linearization may leave it out.
    #[inline]
    pub(crate) fn optional(&self) -> bool {
        self.ret.is_none()
    }
}

/// The interned value standing for every value that no operation observes (see [`compile`]).
pub(crate) const UNOBSERVED: Value = 1;

/// Interns register values of one key: observed values get ids from 2 up, all others share
/// [`UNOBSERVED`].
struct Interner {
    observed: HashMap<Bytes, Value>,
}

impl Interner {
    fn observe(&mut self, value: Option<&Bytes>) {
        if let Some(bytes) = value {
            let next = Value::try_from(self.observed.len() + 2).unwrap_or(Value::MAX);
            self.observed.entry(bytes.clone()).or_insert(next);
        }
    }

    fn id(&self, value: Option<&Bytes>) -> Value {
        match value {
            None => ABSENT,
            Some(bytes) => self.observed.get(bytes).copied().unwrap_or(UNOBSERVED),
        }
    }
}

/// Compiles the operations `indices` of `history` (all of one key, already validated).
///
/// Values are interned as a quotient of the value domain: a value is *observed* when a completed
/// read returned it or a compare-and-swap compares against it; all other values (only ever
/// written) are indistinguishable by every action of the history, so they share one id. This
/// keeps the model state space small and lets writes of different unobserved values count as
/// interchangeable.
///
/// Operations that cannot constrain anything are dropped here: unknown-outcome reads, and
/// unknown-outcome compare-and-swaps whose expected and new values are equal (they never change
/// the state). The result is sorted by invocation time (ties by history index).
pub(crate) fn compile(history: &[Operation], indices: &[usize]) -> Vec<CompiledOp> {
    let mut interner = Interner {
        observed: HashMap::new(),
    };
    for op in indices.iter().filter_map(|&i| history.get(i)) {
        match (&op.input, &op.output) {
            (KvInput::Get, Some(KvOutput::Get(v))) => interner.observe(v.as_ref()),
            (KvInput::Cas { expected, .. }, _) => interner.observe(expected.as_ref()),
            _ => {}
        }
    }
    let mut ops = Vec::with_capacity(indices.len());
    for &index in indices {
        let Some(op) = history.get(index) else {
            continue;
        };
        let action = match (&op.input, &op.output) {
            (KvInput::Get, Some(KvOutput::Get(v))) => Action::Read(interner.id(v.as_ref())),
            (KvInput::Get, _) => continue,
            (KvInput::Put(v), _) => Action::Write(interner.id(Some(v))),
            (KvInput::Delete, _) => Action::Write(ABSENT),
            (KvInput::Cas { expected, .. }, Some(KvOutput::Cas(false))) => Action::CasFailed {
                expected: interner.id(expected.as_ref()),
            },
            (KvInput::Cas { expected, new }, output) => {
                let expected = interner.id(expected.as_ref());
                let new = interner.id(new.as_ref());
                if output.is_none() && expected == new {
                    continue;
                }
                Action::Cas { expected, new }
            }
        };
        ops.push(CompiledOp {
            action,
            call: op.call,
            ret: op.ret,
            index,
        });
    }
    ops.sort_by_key(|op| (op.call, op.index));
    ops
}
