//! Linearizability checking of key-value histories.
//!
//! A history is a set of [`Operation`]s on a key-value store, each with the logical time it was
//! invoked and, if its outcome is known, the time it returned and what it returned. Each key is
//! an independent register that starts absent, so the history is linearizable exactly when the
//! sub-history of every key is (P-compositionality); [`check`] splits the history by key and runs
//! a Wing–Gong / Lowe just-in-time linearization search with memoization on each.
//!
//! Conventions:
//! - An operation with `ret: None` (and `output: None`) has an **unknown outcome**: it may have
//!   taken effect at any point after its call, or never. Operations known not to have taken
//!   effect must not be given to the checker at all.
//! - Times are logical. Operations whose intervals touch (one's return time equals another's call
//!   time) are treated as concurrent.
//! - The search is bounded by a number of steps, not by wall time, so the verdict is
//!   deterministic; when the budget runs out the verdict is [`Verdict::Unknown`].
//!
//! Beyond memoizing (set of linearized operations, register state), the search discards orders
//! that are provably redundant: unknown-outcome operations are only placed right before an
//! operation they make a difference to, identical unknown-outcome operations are used in
//! invocation order, reads and failed compare-and-swaps that can go now go now, and values no
//! operation observes are merged. Refuting a history is the expensive case (it must exhaust every
//! consistent configuration); all 52 etcd Jepsen histories in `shared/` take under 2,000 steps.
//!
//! ```
//! use bytes::Bytes;
//! use raft_sim::linearizability::{check, KvInput, KvOutput, Operation, Verdict};
//!
//! let key = Bytes::from_static(b"x");
//! let one = Bytes::from_static(b"1");
//! let history = [
//!     Operation::completed(1, key.clone(), KvInput::Put(one), 0, 10, KvOutput::Put),
//!     // Starts after the write returned, yet reads the register as still absent: stale.
//!     Operation::completed(2, key.clone(), KvInput::Get, 20, 30, KvOutput::Get(None)),
//! ];
//! let result = check(&history, 1_000_000).unwrap();
//! assert!(matches!(result.verdict, Verdict::NotLinearizable { .. }));
//! ```

mod hash;
mod model;
mod search;

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;

use search::KeyOutcome;

/// A step budget large enough for any history the simulator produces in practice.
pub const DEFAULT_MAX_STEPS: u64 = 50_000_000;

/// What a client asked of one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Read the key.
    Get,
    /// Set the key to a value.
    Put(Bytes),
    /// Remove the key (succeeds whether or not it is present).
    Delete,
    /// Compare-and-swap: if the current value equals `expected` (`None` = absent), set it to
    /// `new` (`None` = delete).
    Cas {
        /// The value the key must hold for the swap to happen.
        expected: Option<Bytes>,
        /// The value it then holds; `None` deletes the key.
        new: Option<Bytes>,
    },
}

impl KvInput {
    /// Executes the operation against a register holding `state`, updating it, and returns the
    /// output a correct (sequential) store gives.
    pub fn apply(&self, state: &mut Option<Bytes>) -> KvOutput {
        match self {
            KvInput::Get => KvOutput::Get(state.clone()),
            KvInput::Put(v) => {
                *state = Some(v.clone());
                KvOutput::Put
            }
            KvInput::Delete => {
                *state = None;
                KvOutput::Delete
            }
            KvInput::Cas { expected, new } => {
                if state == expected {
                    state.clone_from(new);
                    KvOutput::Cas(true)
                } else {
                    KvOutput::Cas(false)
                }
            }
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            KvInput::Get => "get",
            KvInput::Put(_) => "put",
            KvInput::Delete => "delete",
            KvInput::Cas { .. } => "cas",
        }
    }
}

/// What the store answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The value read (`None` = absent).
    Get(Option<Bytes>),
    /// The put took effect.
    Put,
    /// The delete took effect.
    Delete,
    /// `true`: the swap took effect; `false`: it completed without effect because the current
    /// value differed from the expected one.
    Cas(bool),
}

impl KvOutput {
    fn kind(&self) -> &'static str {
        match self {
            KvOutput::Get(_) => "get",
            KvOutput::Put => "put",
            KvOutput::Delete => "delete",
            KvOutput::Cas(_) => "cas",
        }
    }
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The client (process) that issued it; informational only.
    pub process: u64,
    /// The key it acted on.
    pub key: Bytes,
    /// What was asked.
    pub input: KvInput,
    /// Logical invocation time.
    pub call: u64,
    /// Logical response time; `None` if the outcome is unknown (e.g. the request timed out).
    pub ret: Option<u64>,
    /// The response; `None` exactly when `ret` is `None`.
    pub output: Option<KvOutput>,
}

impl Operation {
    /// An operation that completed at `ret` with `output`.
    pub fn completed(
        process: u64,
        key: Bytes,
        input: KvInput,
        call: u64,
        ret: u64,
        output: KvOutput,
    ) -> Self {
        Operation {
            process,
            key,
            input,
            call,
            ret: Some(ret),
            output: Some(output),
        }
    }

    /// An operation with unknown outcome: it may have taken effect at any time after `call`, or
    /// never.
    pub fn unknown(process: u64, key: Bytes, input: KvInput, call: u64) -> Self {
        Operation {
            process,
            key,
            input,
            call,
            ret: None,
            output: None,
        }
    }
}

/// Why a history is malformed. `index` is the operation's position in the checked slice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The operation returned no later than it was invoked.
    #[error("operation #{index}: return time {ret} is not after call time {call}")]
    ReturnNotAfterCall {
        /// Position of the operation.
        index: usize,
        /// Its call time.
        call: u64,
        /// Its return time.
        ret: u64,
    },
    /// The operation has a return time but no output.
    #[error("operation #{index}: has a return time but no output")]
    MissingOutput {
        /// Position of the operation.
        index: usize,
    },
    /// The operation has an output but no return time.
    #[error("operation #{index}: has an output but no return time")]
    OutputWithoutReturn {
        /// Position of the operation.
        index: usize,
    },
    /// The output is of another kind than the input (e.g. a get answered by a put output).
    #[error("operation #{index}: a {input} input cannot have a {output} output")]
    OutputMismatch {
        /// Position of the operation.
        index: usize,
        /// The input's kind.
        input: &'static str,
        /// The output's kind.
        output: &'static str,
    },
}

/// Checks that every operation is well formed: `call < ret`, an output exactly when there is a
/// return time, and an output of the input's kind.
pub fn validate(history: &[Operation]) -> Result<(), HistoryError> {
    for (index, op) in history.iter().enumerate() {
        match (op.ret, &op.output) {
            (None, None) => {}
            (Some(_), None) => return Err(HistoryError::MissingOutput { index }),
            (None, Some(_)) => return Err(HistoryError::OutputWithoutReturn { index }),
            (Some(ret), Some(output)) => {
                if ret <= op.call {
                    return Err(HistoryError::ReturnNotAfterCall {
                        index,
                        call: op.call,
                        ret,
                    });
                }
                if op.input.kind() != output.kind() {
                    return Err(HistoryError::OutputMismatch {
                        index,
                        input: op.input.kind(),
                        output: output.kind(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The checker's conclusion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Some sequential order of the operations, consistent with real time and the register
    /// semantics of every key, explains every observed output.
    Linearizable,
    /// No such order exists for `key`.
    NotLinearizable {
        /// The key whose sub-history has no linearization.
        key: Bytes,
        /// Indices (into the checked history) of the longest linearizable prefix the search
        /// met for that key, in linearization order.
        longest_prefix: Vec<usize>,
        /// Index of the completed operation no remaining operation could be linearized before,
        /// once that prefix was linearized.
        blocked_op: usize,
        /// A short human explanation naming the operations involved.
        explanation: String,
    },
    /// The step budget ran out before a verdict was reached.
    Unknown,
}

impl Verdict {
    /// `linearizable`, `not linearizable` or `unknown`.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable { .. } => "not linearizable",
            Verdict::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::NotLinearizable { explanation, .. } => {
                write!(f, "not linearizable: {explanation}")
            }
            other => f.write_str(other.label()),
        }
    }
}

/// How much searching one key took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStats {
    /// The key.
    pub key: Bytes,
    /// Its operations given to the search (after dropping unknown-outcome reads).
    pub ops: usize,
    /// Steps spent on it.
    pub steps: u64,
}

/// The result of [`check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// The verdict.
    pub verdict: Verdict,
    /// Steps spent over all keys searched (a step = one attempt to apply an operation to the
    /// model).
    pub steps: u64,
    /// The key that took the most steps, if any key was searched.
    pub slowest_key: Option<KeyStats>,
}

/// Checks whether `history` is linearizable, spending at most `max_steps` steps in total.
///
/// Keys are searched from the one with the fewest operations up (ties in key order), so cheap
/// keys are decided before an expensive one can exhaust the budget; the first key found not
/// linearizable decides the verdict. Unknown-outcome reads are dropped up front: they constrain
/// nothing. Fails only if the history is malformed (see [`validate`]).
pub fn check(history: &[Operation], max_steps: u64) -> Result<CheckResult, HistoryError> {
    validate(history)?;

    let mut by_key: BTreeMap<&Bytes, Vec<usize>> = BTreeMap::new();
    for (index, op) in history.iter().enumerate() {
        if op.output.is_none() && op.input == KvInput::Get {
            continue;
        }
        by_key.entry(&op.key).or_default().push(index);
    }
    let mut keys: Vec<(&Bytes, Vec<usize>)> = by_key.into_iter().collect();
    keys.sort_by_key(|(_, indices)| indices.len());

    let mut steps = 0u64;
    let mut slowest_key: Option<KeyStats> = None;
    for (key, indices) in keys {
        let ops = model::compile(history, &indices);
        let searched = search::search(&ops, max_steps.saturating_sub(steps));
        steps = steps.saturating_add(searched.steps);
        if slowest_key
            .as_ref()
            .is_none_or(|slowest| searched.steps > slowest.steps)
        {
            slowest_key = Some(KeyStats {
                key: key.clone(),
                ops: ops.len(),
                steps: searched.steps,
            });
        }
        let verdict = match searched.outcome {
            KeyOutcome::Linearizable => continue,
            KeyOutcome::Exhausted => Verdict::Unknown,
            KeyOutcome::NotLinearizable { prefix, blocked } => Verdict::NotLinearizable {
                key: key.clone(),
                explanation: explain(history, key, &prefix, blocked),
                longest_prefix: prefix,
                blocked_op: blocked,
            },
        };
        return Ok(CheckResult {
            verdict,
            steps,
            slowest_key,
        });
    }
    Ok(CheckResult {
        verdict: Verdict::Linearizable,
        steps,
        slowest_key,
    })
}

/// How many of the prefix's last operations an explanation names.
const EXPLAINED_PREFIX_TAIL: usize = 3;

fn explain(history: &[Operation], key: &Bytes, prefix: &[usize], blocked: usize) -> String {
    let mut state: Option<Bytes> = None;
    for op in prefix.iter().filter_map(|&i| history.get(i)) {
        op.input.apply(&mut state);
    }
    let mut text = format!(
        "key {}: the longest linearizable prefix has {} op(s)",
        DisplayValue(Some(key)),
        prefix.len()
    );
    if !prefix.is_empty() {
        let shown = &prefix[prefix.len().saturating_sub(EXPLAINED_PREFIX_TAIL)..];
        let ops: Vec<String> = shown
            .iter()
            .filter_map(|&i| history.get(i).map(|op| DisplayOp(i, op).to_string()))
            .collect();
        let ellipsis = if shown.len() < prefix.len() {
            "..., "
        } else {
            ""
        };
        text.push_str(&format!(" [{ellipsis}{}]", ops.join(", ")));
    }
    text.push_str(&format!(
        " leaving the value {}; then no remaining op can take effect before {} returns",
        DisplayValue(state.as_ref()),
        match history.get(blocked) {
            Some(op) => DisplayOp(blocked, op).to_string(),
            None => format!("#{blocked}"),
        }
    ));
    text
}

/// Shows a value as a quoted string when it is printable ASCII, else as hex; `None` is `absent`.
struct DisplayValue<'a>(Option<&'a Bytes>);

impl fmt::Display for DisplayValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("absent"),
            Some(bytes) if bytes.iter().all(|b| (0x20..0x7f).contains(b) && *b != b'"') => {
                write!(f, "\"{}\"", String::from_utf8_lossy(bytes))
            }
            Some(bytes) => {
                f.write_str("0x")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// Shows an operation as `#index pP input -> output [call, ret]`.
struct DisplayOp<'a>(usize, &'a Operation);

impl fmt::Display for DisplayOp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let DisplayOp(index, op) = self;
        write!(f, "#{index} p{} ", op.process)?;
        match &op.input {
            KvInput::Get => f.write_str("get")?,
            KvInput::Put(v) => write!(f, "put {}", DisplayValue(Some(v)))?,
            KvInput::Delete => f.write_str("delete")?,
            KvInput::Cas { expected, new } => write!(
                f,
                "cas {} -> {}",
                DisplayValue(expected.as_ref()),
                DisplayValue(new.as_ref())
            )?,
        }
        match (&op.output, op.ret) {
            (Some(KvOutput::Get(v)), Some(ret)) => {
                write!(f, " = {} [{}, {ret}]", DisplayValue(v.as_ref()), op.call)
            }
            (Some(KvOutput::Cas(ok)), Some(ret)) => write!(f, " = {ok} [{}, {ret}]", op.call),
            (Some(_), Some(ret)) => write!(f, " = ok [{}, {ret}]", op.call),
            _ => write!(f, " = ? [{}, ...)", op.call),
        }
    }
}
