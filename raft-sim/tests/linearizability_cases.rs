//! Hand-written histories with known verdicts, plus property tests: histories produced by a real
//! sequential register are linearizable, one corrupted read makes them not linearizable, and on
//! small random histories the checker agrees with a brute-force search.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use proptest::prelude::*;
use raft_sim::linearizability::{
    check, validate, CheckResult, HistoryError, KvInput, KvOutput, Operation, Verdict,
    DEFAULT_MAX_STEPS,
};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A completed operation on key "k".
fn ok(process: u64, input: KvInput, call: u64, ret: u64, output: KvOutput) -> Operation {
    Operation::completed(process, b("k"), input, call, ret, output)
}

/// An unknown-outcome operation on key "k".
fn unknown(process: u64, input: KvInput, call: u64) -> Operation {
    Operation::unknown(process, b("k"), input, call)
}

fn put(process: u64, value: &str, call: u64, ret: u64) -> Operation {
    ok(process, KvInput::Put(b(value)), call, ret, KvOutput::Put)
}

fn get(process: u64, value: Option<&str>, call: u64, ret: u64) -> Operation {
    ok(
        process,
        KvInput::Get,
        call,
        ret,
        KvOutput::Get(value.map(b)),
    )
}

fn cas(expected: Option<&str>, new: Option<&str>) -> KvInput {
    KvInput::Cas {
        expected: expected.map(b),
        new: new.map(b),
    }
}

fn run(history: &[Operation]) -> CheckResult {
    check(history, DEFAULT_MAX_STEPS).expect("well-formed history")
}

#[track_caller]
fn assert_linearizable(history: &[Operation]) {
    let result = run(history);
    assert_eq!(result.verdict, Verdict::Linearizable, "{history:#?}");
}

/// Asserts the history is not linearizable because of `key`, and returns the verdict.
#[track_caller]
fn assert_not_linearizable_at(history: &[Operation], key: &str) -> Verdict {
    let result = run(history);
    match &result.verdict {
        Verdict::NotLinearizable {
            key: bad,
            explanation,
            ..
        } => {
            assert_eq!(bad, &b(key), "{explanation}");
            assert!(!explanation.is_empty());
        }
        other => panic!("expected not linearizable at {key:?}, got {other:?}"),
    }
    result.verdict
}

#[track_caller]
fn assert_not_linearizable(history: &[Operation]) -> Verdict {
    assert_not_linearizable_at(history, "k")
}

#[test]
fn empty_history_is_linearizable() {
    let result = run(&[]);
    assert_eq!(result.verdict, Verdict::Linearizable);
    assert_eq!(result.steps, 0);
    assert_eq!(result.slowest_key, None);
}

#[test]
fn sequential_history_is_linearizable() {
    assert_linearizable(&[
        get(1, None, 0, 1),
        put(1, "1", 2, 3),
        get(2, Some("1"), 4, 5),
        put(2, "2", 6, 7),
        get(1, Some("2"), 8, 9),
    ]);
}

#[test]
fn stale_read_is_not_linearizable() {
    let history = [put(1, "1", 0, 10), get(2, None, 20, 30)];
    let verdict = assert_not_linearizable(&history);
    // The explanation points at the stale read.
    let Verdict::NotLinearizable {
        blocked_op,
        longest_prefix,
        explanation,
        ..
    } = verdict
    else {
        unreachable!()
    };
    assert_eq!(blocked_op, 1, "{explanation}");
    assert_eq!(longest_prefix, vec![0], "{explanation}");
    assert!(explanation.contains("#1 p2 get = absent"), "{explanation}");
}

#[test]
fn lost_write_is_not_linearizable() {
    assert_not_linearizable(&[
        put(1, "1", 0, 10),
        put(2, "2", 20, 30),
        get(3, Some("1"), 40, 50),
    ]);
}

#[test]
fn read_of_a_value_never_written_is_not_linearizable() {
    assert_not_linearizable(&[put(1, "1", 0, 10), get(2, Some("7"), 5, 30)]);
    assert_not_linearizable(&[get(2, Some("7"), 5, 30)]);
}

#[test]
fn concurrent_ops_can_be_ordered_either_way() {
    // Two overlapping writes: later reads may see either, as long as they agree.
    for last in ["1", "2"] {
        assert_linearizable(&[
            put(1, "1", 0, 50),
            put(2, "2", 10, 40),
            get(3, Some(last), 60, 70),
            get(4, Some(last), 80, 90),
        ]);
    }
    assert_not_linearizable(&[
        put(1, "1", 0, 50),
        put(2, "2", 10, 40),
        get(3, Some("2"), 60, 70),
        get(4, Some("1"), 80, 90),
    ]);
    // A read overlapping a write may see the old or the new value.
    for seen in [None, Some("1")] {
        assert_linearizable(&[put(1, "1", 0, 50), get(2, seen, 10, 40)]);
    }
    // Reads overlapping each other and the write may even disagree, in the right order.
    assert_linearizable(&[
        put(1, "1", 0, 100),
        get(2, Some("1"), 10, 40),
        get(3, None, 20, 90),
    ]);
    // ...but not once the first read returned before the second started.
    assert_not_linearizable(&[
        put(1, "1", 0, 100),
        get(2, Some("1"), 10, 40),
        get(3, None, 50, 90),
    ]);
}

#[test]
fn intervals_that_touch_are_concurrent() {
    assert_linearizable(&[put(1, "1", 0, 10), get(2, None, 10, 20)]);
    assert_not_linearizable(&[put(1, "1", 0, 10), get(2, None, 11, 20)]);
}

#[test]
fn unknown_write_that_took_effect_is_linearizable() {
    assert_linearizable(&[
        unknown(1, KvInput::Put(b("1")), 0),
        get(2, None, 5, 6),
        get(2, Some("1"), 10, 20),
        get(3, Some("1"), 30, 40),
    ]);
}

#[test]
fn unknown_write_may_take_effect_long_after_its_call() {
    assert_linearizable(&[
        unknown(1, KvInput::Put(b("1")), 0),
        put(2, "2", 10, 20),
        get(3, Some("2"), 30, 40),
        get(3, Some("1"), 1000, 1001),
    ]);
}

#[test]
fn unknown_write_that_never_took_effect_is_linearizable() {
    assert_linearizable(&[
        unknown(1, KvInput::Put(b("1")), 0),
        get(2, None, 10, 20),
        get(3, None, 30, 40),
        put(2, "2", 50, 60),
        get(3, Some("2"), 70, 80),
    ]);
}

#[test]
fn unknown_write_whose_effect_appears_then_disappears_is_not_linearizable() {
    assert_not_linearizable(&[
        unknown(1, KvInput::Put(b("1")), 0),
        get(2, Some("1"), 10, 20),
        get(3, None, 30, 40),
    ]);
    // Nor can it take effect twice.
    assert_not_linearizable(&[
        unknown(1, KvInput::Put(b("1")), 0),
        get(2, Some("1"), 10, 20),
        put(3, "2", 30, 40),
        get(2, Some("1"), 50, 60),
    ]);
}

#[test]
fn identical_unknown_writes_can_each_take_effect_once() {
    let mut history = vec![
        unknown(1, KvInput::Put(b("1")), 0),
        unknown(2, KvInput::Put(b("1")), 1),
        get(3, Some("1"), 10, 11),
        put(3, "2", 12, 13),
        get(3, Some("2"), 14, 15),
        get(3, Some("1"), 16, 17),
    ];
    assert_linearizable(&history);
    // A third appearance needs a third write.
    history.extend([
        put(3, "2", 18, 19),
        get(3, Some("2"), 20, 21),
        get(3, Some("1"), 22, 23),
    ]);
    assert_not_linearizable(&history);
    history.push(unknown(4, KvInput::Put(b("1")), 2));
    assert_linearizable(&history);
}

#[test]
fn unknown_read_constrains_nothing() {
    assert_linearizable(&[
        put(1, "1", 0, 10),
        unknown(2, KvInput::Get, 20),
        get(3, Some("1"), 30, 40),
    ]);
}

#[test]
fn failed_cas_constrains_the_state() {
    // After "1" was written, cas 1 -> 2 cannot fail...
    assert_not_linearizable(&[
        put(1, "1", 0, 10),
        ok(2, cas(Some("1"), Some("2")), 20, 30, KvOutput::Cas(false)),
    ]);
    // ...unless another write may have intervened.
    assert_linearizable(&[
        put(1, "1", 0, 10),
        put(3, "3", 15, 25),
        ok(2, cas(Some("1"), Some("2")), 20, 30, KvOutput::Cas(false)),
        get(2, Some("3"), 40, 50),
    ]);
    // A failed cas changes nothing.
    assert_not_linearizable(&[
        ok(2, cas(None, Some("2")), 0, 10, KvOutput::Cas(false)),
        get(2, None, 20, 30),
    ]);
    assert_not_linearizable(&[
        put(1, "1", 0, 10),
        ok(2, cas(Some("3"), Some("2")), 20, 30, KvOutput::Cas(false)),
        get(2, Some("2"), 40, 50),
    ]);
}

#[test]
fn successful_cas_requires_and_sets_the_expected_value() {
    assert_linearizable(&[
        ok(1, cas(None, Some("1")), 0, 10, KvOutput::Cas(true)),
        ok(1, cas(Some("1"), Some("2")), 20, 30, KvOutput::Cas(true)),
        get(2, Some("2"), 40, 50),
    ]);
    assert_not_linearizable(&[
        put(1, "1", 0, 10),
        ok(2, cas(None, Some("2")), 20, 30, KvOutput::Cas(true)),
    ]);
    // An unknown cas takes effect only from its expected value.
    assert_linearizable(&[
        put(1, "1", 0, 10),
        unknown(2, cas(Some("1"), Some("2")), 20),
        get(3, Some("2"), 30, 40),
    ]);
    assert_not_linearizable(&[
        put(1, "3", 0, 10),
        unknown(2, cas(Some("1"), Some("2")), 20),
        get(3, Some("2"), 30, 40),
    ]);
}

#[test]
fn delete_and_cas_to_none_remove_the_key() {
    assert_linearizable(&[
        put(1, "1", 0, 10),
        ok(1, KvInput::Delete, 20, 30, KvOutput::Delete),
        get(2, None, 40, 50),
        ok(1, KvInput::Delete, 60, 70, KvOutput::Delete),
        put(1, "2", 80, 90),
        ok(1, cas(Some("2"), None), 100, 110, KvOutput::Cas(true)),
        get(2, None, 120, 130),
    ]);
    assert_not_linearizable(&[
        put(1, "1", 0, 10),
        ok(1, KvInput::Delete, 20, 30, KvOutput::Delete),
        get(2, Some("1"), 40, 50),
    ]);
    // An unknown delete may explain a value vanishing.
    assert_linearizable(&[
        put(1, "1", 0, 10),
        unknown(2, KvInput::Delete, 20),
        get(2, Some("1"), 30, 40),
        get(2, None, 50, 60),
    ]);
}

#[test]
fn multi_key_verdict_names_the_bad_key() {
    let on = |key: &str, mut op: Operation| {
        op.key = b(key);
        op
    };
    let history = vec![
        on("a", put(1, "1", 0, 10)),
        on("b", put(2, "1", 0, 10)),
        on("c", put(3, "1", 0, 10)),
        on("a", get(1, Some("1"), 20, 30)),
        // Key "b" is read stale; "a" and "c" are fine.
        on("b", get(2, None, 20, 30)),
        on("c", get(3, Some("1"), 20, 30)),
        on("a", put(1, "2", 40, 50)),
        on("a", get(1, Some("2"), 60, 70)),
    ];
    assert_not_linearizable_at(&history, "b");
    // Keys are independent registers: the same value under another key proves nothing.
    let fixed: Vec<Operation> = history
        .iter()
        .filter(|op| !(op.key == b("b") && op.output == Some(KvOutput::Get(None))))
        .cloned()
        .collect();
    let result = run(&fixed);
    assert_eq!(result.verdict, Verdict::Linearizable);
    let slowest = result.slowest_key.expect("keys were searched");
    assert_eq!(slowest.key, b("a"));
    assert_eq!(slowest.ops, 4);
    assert_linearizable(&[on("a", put(1, "1", 0, 10)), on("b", get(2, None, 20, 30))]);
}

#[test]
fn malformed_histories_are_typed_errors() {
    let cases = [
        (
            vec![put(1, "1", 0, 10), put(1, "1", 20, 15)],
            HistoryError::ReturnNotAfterCall {
                index: 1,
                call: 20,
                ret: 15,
            },
        ),
        (
            vec![put(1, "1", 5, 5)],
            HistoryError::ReturnNotAfterCall {
                index: 0,
                call: 5,
                ret: 5,
            },
        ),
        (
            vec![ok(1, KvInput::Get, 0, 10, KvOutput::Put)],
            HistoryError::OutputMismatch {
                index: 0,
                input: "get",
                output: "put",
            },
        ),
        (
            vec![ok(1, cas(None, None), 0, 10, KvOutput::Get(None))],
            HistoryError::OutputMismatch {
                index: 0,
                input: "cas",
                output: "get",
            },
        ),
        (
            vec![Operation {
                ret: Some(3),
                ..unknown(1, KvInput::Delete, 0)
            }],
            HistoryError::MissingOutput { index: 0 },
        ),
        (
            vec![Operation {
                output: Some(KvOutput::Delete),
                ..unknown(1, KvInput::Delete, 0)
            }],
            HistoryError::OutputWithoutReturn { index: 0 },
        ),
    ];
    for (history, expected) in cases {
        assert_eq!(validate(&history), Err(expected.clone()));
        assert_eq!(check(&history, DEFAULT_MAX_STEPS), Err(expected.clone()));
        assert!(!expected.to_string().is_empty());
    }
}

/// Many fully concurrent writes followed by a read of a value none of them wrote: refuting it
/// means visiting every subset of the writes.
fn hard_history(writers: u64) -> Vec<Operation> {
    let mut history: Vec<Operation> = (0..writers)
        .map(|p| put(p, &p.to_string(), p, 1000 + p))
        .collect();
    history.push(get(writers, Some("never"), 2000, 2001));
    history
}

#[test]
fn tiny_step_budget_gives_unknown() {
    let history = hard_history(12);
    let result = check(&history, 100).expect("well formed");
    assert_eq!(result.verdict, Verdict::Unknown);
    assert_eq!(result.steps, 100);
    // With enough budget the same history is refuted, deterministically.
    let first = run(&history);
    assert!(matches!(first.verdict, Verdict::NotLinearizable { .. }));
    assert!(first.steps > 100);
    assert_eq!(run(&history), first);
    // The budget is shared by all keys: a cheap key is still decided first.
    let mut two_keys = history.clone();
    two_keys.push(Operation::completed(
        9,
        b("cheap"),
        KvInput::Get,
        0,
        1,
        KvOutput::Get(Some(b("x"))),
    ));
    let result = check(&two_keys, 100).expect("well formed");
    assert!(
        matches!(&result.verdict, Verdict::NotLinearizable { key, .. } if key == &b("cheap")),
        "{:?}",
        result.verdict
    );
}

/// A simulator-like history: `clients` closed-loop clients on `keys` keys, each operation taking
/// effect at a random point inside its interval (executed in that order against a [`Store`]),
/// with timeouts (unknown outcome, possibly never taking effect) and unique written values.
fn client_history(seed: u64, clients: u64, keys: u64, ops: usize) -> Vec<Operation> {
    let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };
    // (effect point or None if it never took effect, call, ret or None, process, key, input)
    type Planned = (Option<u64>, u64, Option<u64>, u64, Bytes, KvInput);
    let mut planned: Vec<Planned> = Vec::new();
    let mut free_at: Vec<u64> = (0..clients).map(|c| c * 3).collect();
    let mut process_of: Vec<u64> = (0..clients).collect();
    let mut next_process = clients;
    let mut written = 0u64;
    for _ in 0..ops {
        let c = (0..clients as usize)
            .min_by_key(|&c| free_at[c])
            .expect("at least one client");
        let call = free_at[c] + 1 + next(5);
        let key = b(&format!("key{}", next(keys)));
        let input = match next(10) {
            0..=3 => KvInput::Get,
            4..=6 => {
                written += 1;
                KvInput::Put(b(&format!("v{written}")))
            }
            7 => KvInput::Delete,
            _ => {
                written += 1;
                let expected = (written > 1)
                    .then(|| b(&format!("v{}", written - 1 - next(3).min(written - 1))));
                KvInput::Cas {
                    expected,
                    new: Some(b(&format!("v{written}"))),
                }
            }
        };
        // Points are made distinct by scaling times and adding the op's sequence number.
        let point = (call + 1 + next(30)) * 100_000 + planned.len() as u64;
        let ret = point / 100_000 + 1 + next(30);
        let (point, ret) = match next(40) {
            0 => (None, None),            // timed out, never took effect
            1 | 2 => (Some(point), None), // timed out after taking effect
            _ => (Some(point), Some(ret)),
        };
        planned.push((point, call, ret, process_of[c], key, input));
        match ret {
            Some(ret) => free_at[c] = ret,
            None => {
                // A timed-out client never issues again; a fresh process takes its place.
                free_at[c] = call + 40;
                process_of[c] = next_process;
                next_process += 1;
            }
        }
    }
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| planned[i].0);
    let mut store = Store::default();
    let mut outputs: Vec<Option<KvOutput>> = vec![None; planned.len()];
    for i in order {
        let (point, _, _, _, key, input) = &planned[i];
        if point.is_some() {
            outputs[i] = Some(store.execute(key, input));
        }
    }
    planned
        .into_iter()
        .zip(outputs)
        .map(
            |((_, call, ret, process, key, input), output)| match (ret, output) {
                (Some(ret), Some(output)) => Operation::completed(
                    process,
                    key,
                    input,
                    call * 100_000,
                    ret * 100_000 + 1,
                    output,
                ),
                _ => Operation::unknown(process, key, input, call * 100_000),
            },
        )
        .collect()
}

#[test]
fn large_client_histories_are_checked_quickly() {
    for seed in 1..=4 {
        let mut history = client_history(seed, 8, 3, 3000);
        let ops = history.len() as u64;
        let result = run(&history);
        assert_eq!(result.verdict, Verdict::Linearizable, "seed {seed}");
        let slowest = result.slowest_key.expect("keys were searched");
        assert!(
            result.steps < 30 * ops,
            "seed {seed}: {} steps, slowest key {slowest:?}",
            result.steps
        );
        // Corrupt the last completed read: refuting it means exhausting every configuration
        // consistent with the rest of the history, the worst case. Caught, on the right key.
        let victim = (0..history.len())
            .rev()
            .find(|&i| matches!(history[i].output, Some(KvOutput::Get(_))))
            .expect("some read completed");
        history[victim].output = Some(KvOutput::Get(Some(b("never-written"))));
        let key = String::from_utf8_lossy(&history[victim].key).into_owned();
        assert_not_linearizable_at(&history, &key);
        let refuted = run(&history);
        assert!(
            refuted.steps < 2000 * ops,
            "seed {seed}: refuting took {} steps",
            refuted.steps
        );
        println!(
            "seed {seed}: {ops} ops, linearizable in {} steps, refuted in {} steps",
            result.steps, refuted.steps
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests.

/// An operation kind for generated histories, over a small value domain.
#[derive(Debug, Clone)]
enum GenInput {
    Get,
    Put(u8),
    Delete,
    Cas(Option<u8>, Option<u8>),
}

impl GenInput {
    fn to_input(&self) -> KvInput {
        let value = |v: u8| b(&v.to_string());
        match self {
            GenInput::Get => KvInput::Get,
            GenInput::Put(v) => KvInput::Put(value(*v)),
            GenInput::Delete => KvInput::Delete,
            GenInput::Cas(expected, new) => KvInput::Cas {
                expected: expected.map(value),
                new: new.map(value),
            },
        }
    }
}

fn gen_input() -> impl Strategy<Value = GenInput> {
    prop_oneof![
        3 => Just(GenInput::Get),
        3 => (0u8..4).prop_map(GenInput::Put),
        1 => Just(GenInput::Delete),
        2 => (proptest::option::of(0u8..4), proptest::option::of(0u8..4))
            .prop_map(|(e, n)| GenInput::Cas(e, n)),
    ]
}

/// A sequential store written independently of the checker: a map of registers.
#[derive(Default)]
struct Store(BTreeMap<Bytes, Bytes>);

impl Store {
    fn execute(&mut self, key: &Bytes, input: &KvInput) -> KvOutput {
        match input {
            KvInput::Get => KvOutput::Get(self.0.get(key).cloned()),
            KvInput::Put(v) => {
                self.0.insert(key.clone(), v.clone());
                KvOutput::Put
            }
            KvInput::Delete => {
                self.0.remove(key);
                KvOutput::Delete
            }
            KvInput::Cas { expected, new } => {
                if self.0.get(key) != expected.as_ref() {
                    return KvOutput::Cas(false);
                }
                match new {
                    Some(v) => self.0.insert(key.clone(), v.clone()),
                    None => self.0.remove(key),
                };
                KvOutput::Cas(true)
            }
        }
    }
}

/// One executed operation: key index, input, how long before / after its linearization point
/// its call / return happened, and whether its outcome is reported.
type GenStep = (u8, GenInput, u64, u64, bool);

/// One operation that never took effect but whose outcome is unknown: key, input, call time.
type GenPhantom = (u8, GenInput, u64);

fn key_name(k: u8) -> Bytes {
    b(&format!("key{k}"))
}

/// Executes `steps` in order against a [`Store`], the i-th taking effect at time `30 + 10 i`
/// inside its interval, and adds `phantoms` (never executed, unknown outcome). Then rotates the
/// history by `rotate` so the checker cannot rely on input order.
fn linearizable_history(
    steps: &[GenStep],
    phantoms: &[GenPhantom],
    rotate: usize,
) -> Vec<Operation> {
    let mut store = Store::default();
    let mut history = Vec::new();
    for (i, (k, input, before, after, known)) in steps.iter().enumerate() {
        let point = 30 + 10 * i as u64;
        let key = key_name(*k);
        let input = input.to_input();
        let output = store.execute(&key, &input);
        let process = i as u64;
        history.push(if *known {
            Operation::completed(process, key, input, point - before, point + after, output)
        } else {
            Operation::unknown(process, key, input, point - before)
        });
    }
    for (j, (k, input, call)) in phantoms.iter().enumerate() {
        history.push(Operation::unknown(
            1000 + j as u64,
            key_name(*k),
            input.to_input(),
            *call,
        ));
    }
    if !history.is_empty() {
        let by = rotate % history.len();
        history.rotate_left(by);
    }
    history
}

fn gen_steps(max: usize) -> impl Strategy<Value = Vec<GenStep>> {
    proptest::collection::vec(
        (
            0u8..3,
            gen_input(),
            0u64..=25,
            1u64..=25,
            proptest::bool::weighted(0.8),
        ),
        1..max,
    )
}

fn gen_phantoms() -> impl Strategy<Value = Vec<GenPhantom>> {
    proptest::collection::vec((0u8..3, gen_input(), 0u64..400), 0..4)
}

/// Brute force: tries every order (and every subset of unknown-outcome operations) that respects
/// real time, remembering only exact (done set, store) configurations that failed. Only for
/// small histories.
fn brute_force_linearizable(history: &[Operation]) -> bool {
    type Failed = HashSet<(Vec<bool>, BTreeMap<Bytes, Bytes>)>;
    fn pending_required(history: &[Operation], done: &[bool], j: usize) -> bool {
        !done[j] && history[j].ret.is_some()
    }
    fn search(
        history: &[Operation],
        done: &mut [bool],
        store: &mut Store,
        failed: &mut Failed,
    ) -> bool {
        if !(0..history.len()).any(|j| pending_required(history, done, j)) {
            return true;
        }
        if failed.contains(&(done.to_vec(), store.0.clone())) {
            return false;
        }
        for i in 0..history.len() {
            if done[i] {
                continue;
            }
            // Every operation that returned before this one was called must come first.
            let blocked = (0..history.len()).any(|j| {
                pending_required(history, done, j)
                    && history[j].ret.is_some_and(|r| r < history[i].call)
            });
            if blocked {
                continue;
            }
            let op = &history[i];
            let saved = store.0.clone();
            let output = store.execute(&op.key, &op.input);
            if op
                .output
                .as_ref()
                .is_none_or(|expected| *expected == output)
            {
                done[i] = true;
                let found = search(history, done, store, failed);
                done[i] = false;
                if found {
                    return true;
                }
            }
            store.0 = saved;
        }
        failed.insert((done.to_vec(), store.0.clone()));
        false
    }
    search(
        history,
        &mut vec![false; history.len()],
        &mut Store::default(),
        &mut HashSet::new(),
    )
}

/// A small arbitrary history: random intervals, random outputs of the right kind, a share of
/// unknown outcomes.
fn arbitrary_history(
    keys: u8,
    max_ops: usize,
    known: f64,
) -> impl Strategy<Value = Vec<Operation>> {
    let output = proptest::option::of(0u8..3);
    proptest::collection::vec(
        (
            0u8..keys,
            gen_input(),
            0u64..20,
            proptest::option::weighted(known, 1u64..12),
            output,
            any::<bool>(),
        ),
        0..max_ops,
    )
    .prop_map(|ops| {
        ops.into_iter()
            .enumerate()
            .map(|(i, (k, input, call, duration, read, cas_ok))| {
                let input = input.to_input();
                let Some(duration) = duration else {
                    return Operation::unknown(i as u64, key_name(k), input, call);
                };
                let output = match &input {
                    KvInput::Get => KvOutput::Get(read.map(|v| b(&v.to_string()))),
                    KvInput::Put(_) => KvOutput::Put,
                    KvInput::Delete => KvOutput::Delete,
                    KvInput::Cas { .. } => KvOutput::Cas(cas_ok),
                };
                Operation::completed(i as u64, key_name(k), input, call, call + duration, output)
            })
            .collect()
    })
}

proptest! {
    // 256 cases unless PROPTEST_CASES says otherwise.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn executed_histories_are_linearizable(
        steps in gen_steps(40),
        phantoms in gen_phantoms(),
        rotate in any::<usize>(),
    ) {
        let history = linearizable_history(&steps, &phantoms, rotate);
        let result = check(&history, DEFAULT_MAX_STEPS).expect("well formed");
        prop_assert_eq!(result.verdict, Verdict::Linearizable);
    }

    #[test]
    fn a_read_of_a_never_written_value_is_caught(
        steps in gen_steps(40),
        phantoms in gen_phantoms(),
        rotate in any::<usize>(),
        which in any::<proptest::sample::Index>(),
    ) {
        let mut history = linearizable_history(&steps, &phantoms, rotate);
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].output, Some(KvOutput::Get(_))))
            .collect();
        prop_assume!(!reads.is_empty());
        let victim = reads[which.index(reads.len())];
        history[victim].output = Some(KvOutput::Get(Some(b("never-written"))));
        let result = check(&history, DEFAULT_MAX_STEPS).expect("well formed");
        match result.verdict {
            Verdict::NotLinearizable { key, .. } => prop_assert_eq!(key, history[victim].key.clone()),
            other => prop_assert!(false, "expected not linearizable, got {:?}", other),
        }
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories(history in arbitrary_history(2, 12, 0.75)) {
        agrees_with_brute_force(&history)?;
    }

    #[test]
    fn agrees_with_brute_force_with_many_unknown_outcomes(history in arbitrary_history(1, 14, 0.4)) {
        agrees_with_brute_force(&history)?;
    }
}

fn agrees_with_brute_force(history: &[Operation]) -> Result<(), TestCaseError> {
    {
        let expected = brute_force_linearizable(history);
        let result = check(history, DEFAULT_MAX_STEPS).expect("well formed");
        prop_assert_eq!(
            result.verdict == Verdict::Linearizable,
            expected,
            "checker said {:?}",
            result.verdict
        );
        prop_assert!(result.verdict != Verdict::Unknown);
    }
    Ok(())
}
