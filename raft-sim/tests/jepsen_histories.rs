//! Every labelled etcd Jepsen history gets the verdict its file name states.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use raft_sim::jepsen::{parse_jepsen, read_jepsen_file, JepsenError, JepsenErrorKind, JEPSEN_KEY};
use raft_sim::linearizability::{check, KvInput, KvOutput, Verdict, DEFAULT_MAX_STEPS};

/// Where the histories are looked for unless `RAFT_JEPSEN_HISTORIES` names a directory: the
/// `shared/histories/etcd-jepsen` folder beside the repository.
const HISTORIES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/histories/etcd-jepsen"
);

/// The directory of etcd Jepsen histories. A directory named by `RAFT_JEPSEN_HISTORIES` must
/// exist; without the variable, a checkout that has no histories beside it skips (`None`).
fn histories_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("RAFT_JEPSEN_HISTORIES") {
        return Some(PathBuf::from(dir));
    }
    let dir = PathBuf::from(HISTORIES);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no Jepsen histories at {} (set RAFT_JEPSEN_HISTORIES to their directory)",
            dir.display()
        );
        None
    }
}

/// The history files with the verdict their names state (`true` = linearizable), sorted.
fn labelled_histories(dir: &Path) -> Vec<(PathBuf, bool)> {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files: Vec<(PathBuf, bool)> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_owned();
            if name.ends_with(".not-linearizable.jsonl") {
                Some((path, false))
            } else if name.ends_with(".linearizable.jsonl") {
                Some((path, true))
            } else {
                None
            }
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_etcd_history_gets_its_labelled_verdict() {
    let Some(dir) = histories_dir() else {
        return;
    };
    let files = labelled_histories(&dir);
    assert_eq!(
        files.len(),
        52,
        "expected 52 labelled histories in {}",
        dir.display()
    );
    assert_eq!(
        files
            .iter()
            .filter(|(_, linearizable)| *linearizable)
            .count(),
        11,
        "expected 11 linearizable histories"
    );

    let mut wrong = Vec::new();
    let mut slowest: Option<(Duration, PathBuf, u64)> = None;
    let mut total = Duration::ZERO;
    for (path, expected) in &files {
        let history = read_jepsen_file(path).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            (50..=100).contains(&history.len()),
            "{}: {} operations",
            path.display(),
            history.len()
        );
        let started = Instant::now();
        let result = check(&history, DEFAULT_MAX_STEPS).unwrap_or_else(|e| panic!("{e}"));
        let elapsed = started.elapsed();
        total += elapsed;
        let got = match result.verdict {
            Verdict::Linearizable => Some(true),
            Verdict::NotLinearizable { ref key, .. } => {
                assert_eq!(key.as_ref(), JEPSEN_KEY);
                Some(false)
            }
            Verdict::Unknown => None,
        };
        if got != Some(*expected) {
            wrong.push(format!(
                "{}: got {}, expected linearizable = {expected}",
                path.display(),
                result.verdict.label()
            ));
        }
        if slowest.as_ref().is_none_or(|(time, _, _)| elapsed > *time) {
            slowest = Some((elapsed, path.clone(), result.steps));
        }
    }
    if let Some((time, path, steps)) = &slowest {
        println!(
            "checked {} histories in {total:?}; slowest: {} in {time:?} ({steps} steps)",
            files.len(),
            path.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}

#[test]
fn reader_maps_events_to_operations() {
    let text = r#"{"process": 0, "type": "invoke", "f": "write", "value": 3}
{"process": 1, "type": "invoke", "f": "cas", "value": [3, 4]}
{"process": 0, "type": "ok", "f": "write", "value": 3}

{"process": 2, "type": "invoke", "f": "read", "value": null}
{"process": 1, "type": "info", "f": "cas", "value": null}
{"process": 2, "type": "ok", "f": "read", "value": null}
{"process": 0, "type": "invoke", "f": "cas", "value": [1, 2]}
{"process": 0, "type": "fail", "f": "cas", "value": [1, 2]}
{"process": 0, "type": "invoke", "f": "cas", "value": [3, 1]}
{"process": 0, "type": "ok", "f": "cas", "value": [3, 1]}
{"process": 3, "type": "invoke", "f": "write", "value": 7}
"#;
    let ops = parse_jepsen(text).expect("valid history");
    let summary: Vec<_> = ops
        .iter()
        .map(|op| {
            assert_eq!(op.key.as_ref(), JEPSEN_KEY);
            (
                op.process,
                op.input.clone(),
                op.call,
                op.ret,
                op.output.clone(),
            )
        })
        .collect();
    let b = |s: &'static str| bytes::Bytes::from_static(s.as_bytes());
    assert_eq!(
        summary,
        vec![
            (0, KvInput::Put(b("3")), 1, Some(3), Some(KvOutput::Put)),
            (
                1,
                KvInput::Cas {
                    expected: Some(b("3")),
                    new: Some(b("4"))
                },
                2,
                None,
                None
            ),
            (2, KvInput::Get, 5, Some(7), Some(KvOutput::Get(None))),
            (
                0,
                KvInput::Cas {
                    expected: Some(b("3")),
                    new: Some(b("1"))
                },
                10,
                Some(11),
                Some(KvOutput::Cas(true))
            ),
            // Never completed: unknown outcome.
            (3, KvInput::Put(b("7")), 12, None, None),
        ]
    );
}

/// A malformed text, the line its error must name, and a test of the error's kind.
type ErrorCase = (&'static str, usize, fn(&JepsenErrorKind) -> bool);

#[test]
fn reader_errors_name_the_line() {
    let cases: [ErrorCase; 5] = [
        ("not json", 1, |k| matches!(k, JepsenErrorKind::Json(_))),
        (
            "{\"process\": 0, \"type\": \"invoke\", \"f\": \"read\", \"value\": null}\n{\"process\": 0, \"type\": \"ok\", \"f\": \"write\", \"value\": 1}",
            2,
            |k| matches!(k, JepsenErrorKind::FunctionMismatch { .. }),
        ),
        (
            "\n{\"process\": 5, \"type\": \"ok\", \"f\": \"read\", \"value\": 1}",
            2,
            |k| matches!(k, JepsenErrorKind::CompletionWithoutInvoke { process: 5 }),
        ),
        (
            "{\"process\": 0, \"type\": \"invoke\", \"f\": \"cas\", \"value\": 1}",
            1,
            |k| matches!(k, JepsenErrorKind::BadValue { .. }),
        ),
        (
            "{\"process\": 0, \"type\": \"invoke\", \"f\": \"read\", \"value\": null}\n{\"process\": 0, \"type\": \"invoke\", \"f\": \"read\", \"value\": null}",
            2,
            |k| matches!(k, JepsenErrorKind::InvokeWhilePending { pending_line: 1, .. }),
        ),
    ];
    for (text, expected_line, is_expected) in cases {
        match parse_jepsen(text) {
            Err(JepsenError::Parse {
                line,
                kind,
                path: None,
            }) => {
                assert_eq!(line, expected_line, "{text}: {kind}");
                assert!(is_expected(&kind), "{text}: unexpected error {kind}");
            }
            other => panic!("{text}: expected a parse error, got {other:?}"),
        }
    }
}

#[test]
fn reader_file_errors_name_the_file() {
    let missing = Path::new(HISTORIES).join("no-such-history.jsonl");
    let error = read_jepsen_file(&missing).expect_err("missing file");
    assert!(matches!(error, JepsenError::Io { .. }));
    assert!(
        error.to_string().contains("no-such-history.jsonl"),
        "{error}"
    );
}
