//! Reader for Jepsen single-register histories in JSON lines.
//!
//! Each line is one event, in real-time order:
//!
//! ```text
//! {"process": 4, "type": "invoke", "f": "read",  "value": null}
//! {"process": 4, "type": "ok",     "f": "read",  "value": 3}
//! {"process": 1, "type": "invoke", "f": "cas",   "value": [1, 2]}
//! {"process": 1, "type": "fail",   "f": "cas",   "value": [1, 2]}
//! {"process": 2, "type": "info",   "f": "write", "value": null}
//! ```
//!
//! The next event of a process completes its pending invocation: `ok` took effect, `fail`
//! certainly did not (the operation is dropped), `info` has an unknown outcome (the invocation's
//! value is used). An invocation still pending at the end of the text is treated like `info`.
//! The register maps to the key [`JEPSEN_KEY`]; values (integers, or strings) become their
//! decimal / literal bytes; a read's `null` is an absent register. Logical times are 1-based line
//! numbers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::linearizability::{KvInput, KvOutput, Operation};

/// The key the single Jepsen register is mapped to.
pub const JEPSEN_KEY: &[u8] = b"r";

/// Why a Jepsen history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JepsenError {
    /// The file could not be read.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not a valid event, or the events do not form a history.
    #[error("{}line {line}: {kind}", FileLabel(.path.as_deref()))]
    Parse {
        /// The file, when read by [`read_jepsen_file`].
        path: Option<PathBuf>,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        kind: JepsenErrorKind,
    },
}

/// Prints `path:` before a line number when there is a path.
struct FileLabel<'a>(Option<&'a Path>);

impl fmt::Display for FileLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(path) => write!(f, "{}: ", path.display()),
            None => Ok(()),
        }
    }
}

/// What is wrong with one line of a Jepsen history.
#[derive(Debug, thiserror::Error)]
pub enum JepsenErrorKind {
    /// The line is not a JSON event of the expected shape.
    #[error("invalid event: {0}")]
    Json(#[from] serde_json::Error),
    /// A completion for a process with no pending invocation.
    #[error("process {process} completes an operation it never invoked")]
    CompletionWithoutInvoke {
        /// The process.
        process: u64,
    },
    /// An invocation while the process's previous one is still pending.
    #[error("process {process} invokes while its operation from line {pending_line} is pending")]
    InvokeWhilePending {
        /// The process.
        process: u64,
        /// Line of the pending invocation.
        pending_line: usize,
    },
    /// A completion whose function differs from its invocation's.
    #[error("process {process} completes a {completed} but invoked a {invoked}")]
    FunctionMismatch {
        /// The process.
        process: u64,
        /// The invoked function.
        invoked: &'static str,
        /// The completed function.
        completed: &'static str,
    },
    /// A value of the wrong shape for its function.
    #[error("{f} value {value} is not {expected}")]
    BadValue {
        /// The function.
        f: &'static str,
        /// The offending JSON value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

#[derive(Debug, Deserialize)]
struct Event {
    process: u64,
    #[serde(rename = "type")]
    kind: EventKind,
    f: Function,
    #[serde(default)]
    value: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum EventKind {
    Invoke,
    Ok,
    Fail,
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Function {
    Read,
    Write,
    Cas,
}

impl Function {
    fn name(self) -> &'static str {
        match self {
            Function::Read => "read",
            Function::Write => "write",
            Function::Cas => "cas",
        }
    }
}

/// A register value: an integer (as decimal) or a string (as its bytes).
fn register_value(value: &Value) -> Option<Bytes> {
    match value {
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(Bytes::from(n.to_string())),
        Value::String(s) => Some(Bytes::from(s.clone())),
        _ => None,
    }
}

fn bad_value(f: Function, value: &Value, expected: &'static str) -> JepsenErrorKind {
    JepsenErrorKind::BadValue {
        f: f.name(),
        value: value.to_string(),
        expected,
    }
}

/// The input of an invocation.
fn invocation_input(f: Function, value: &Value) -> Result<KvInput, JepsenErrorKind> {
    match f {
        Function::Read => Ok(KvInput::Get),
        Function::Write => register_value(value)
            .map(KvInput::Put)
            .ok_or_else(|| bad_value(f, value, "an integer or string")),
        Function::Cas => match value {
            Value::Array(pair) if pair.len() == 2 => {
                match (register_value(&pair[0]), register_value(&pair[1])) {
                    (Some(expected), Some(new)) => Ok(KvInput::Cas {
                        expected: Some(expected),
                        new: Some(new),
                    }),
                    _ => Err(bad_value(f, value, "a pair of integers or strings")),
                }
            }
            _ => Err(bad_value(f, value, "a pair [expected, new]")),
        },
    }
}

/// The output of an `ok` completion.
fn ok_output(f: Function, value: &Value) -> Result<KvOutput, JepsenErrorKind> {
    match f {
        Function::Read => match value {
            Value::Null => Ok(KvOutput::Get(None)),
            other => register_value(other)
                .map(|v| KvOutput::Get(Some(v)))
                .ok_or_else(|| bad_value(f, value, "null, an integer or a string")),
        },
        Function::Write => Ok(KvOutput::Put),
        Function::Cas => Ok(KvOutput::Cas(true)),
    }
}

struct Pending {
    line: usize,
    f: Function,
    input: KvInput,
}

/// Parses a Jepsen single-register history into operations on key [`JEPSEN_KEY`], sorted by
/// invocation time. Failed operations are left out; `info` operations (and invocations never
/// completed) have unknown outcome. Blank lines are skipped.
pub fn parse_jepsen(text: &str) -> Result<Vec<Operation>, JepsenError> {
    let key = Bytes::from_static(JEPSEN_KEY);
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut ops = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let at_line = |kind: JepsenErrorKind| JepsenError::Parse {
            path: None,
            line,
            kind,
        };
        if raw.trim().is_empty() {
            continue;
        }
        let event: Event =
            serde_json::from_str(raw).map_err(|e| at_line(JepsenErrorKind::Json(e)))?;
        let process = event.process;
        if event.kind == EventKind::Invoke {
            if let Some(previous) = pending.get(&process) {
                return Err(at_line(JepsenErrorKind::InvokeWhilePending {
                    process,
                    pending_line: previous.line,
                }));
            }
            let input = invocation_input(event.f, &event.value).map_err(at_line)?;
            pending.insert(
                process,
                Pending {
                    line,
                    f: event.f,
                    input,
                },
            );
            continue;
        }
        let Some(invocation) = pending.remove(&process) else {
            return Err(at_line(JepsenErrorKind::CompletionWithoutInvoke {
                process,
            }));
        };
        if invocation.f != event.f {
            return Err(at_line(JepsenErrorKind::FunctionMismatch {
                process,
                invoked: invocation.f.name(),
                completed: event.f.name(),
            }));
        }
        let (call, ret) = (to_time(invocation.line), to_time(line));
        match event.kind {
            EventKind::Ok => {
                let output = ok_output(event.f, &event.value).map_err(at_line)?;
                ops.push(Operation::completed(
                    process,
                    key.clone(),
                    invocation.input,
                    call,
                    ret,
                    output,
                ));
            }
            EventKind::Info => {
                ops.push(Operation::unknown(
                    process,
                    key.clone(),
                    invocation.input,
                    call,
                ));
            }
            EventKind::Fail | EventKind::Invoke => {}
        }
    }
    for (process, invocation) in pending {
        ops.push(Operation::unknown(
            process,
            key.clone(),
            invocation.input,
            to_time(invocation.line),
        ));
    }
    ops.sort_by_key(|op| op.call);
    Ok(ops)
}

fn to_time(line: usize) -> u64 {
    u64::try_from(line).unwrap_or(u64::MAX)
}

/// Reads and parses a Jepsen history file (see [`parse_jepsen`]); errors name the file.
pub fn read_jepsen_file(path: impl AsRef<Path>) -> Result<Vec<Operation>, JepsenError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| JepsenError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_jepsen(&text).map_err(|e| match e {
        JepsenError::Parse { line, kind, .. } => JepsenError::Parse {
            path: Some(path.to_path_buf()),
            line,
            kind,
        },
        other => other,
    })
}
