#!/usr/bin/env python3
"""Mutation check of the simulator: break one safety rule of the core at a time and require
`raft-sim explore` to find a failing seed. Usage: scripts/mutants.py [SEEDS] [NAME...]"""
import os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = os.path.join(ROOT, "raft-proto-core", "src")

# name -> (file, old, new), or a list of them for a change that spans several places.
MUTANTS = {
    "vote-without-log-check": ("election.rs",
        "if can_vote && self.log.is_up_to_date(rv.last_log) {",
        "if can_vote {"),
    "commit-old-term-by-counting": ("replication.rs",
        "if index > committed && self.log.term(index) == Some(self.term) {",
        "if index > committed {"),
    "ack-append-before-durable": ("replication.rs",
        """        self.send_when_durable(
            from,
            reply(AppendResult::Success {
                match_index: last_new,
            }),
            out,
        );""",
        """        self.send(
            from,
            reply(AppendResult::Success {
                match_index: last_new,
            }),
            out,
        );"""),
    "grant-vote-before-durable": ("election.rs",
        "self.send_when_durable(from, Message::RequestVoteResponse(reply), out);",
        "self.send(from, Message::RequestVoteResponse(reply), out);"),
    "keep-conflicting-suffix": ("log.rs",
        ".position(|e| self.term(e.index) != Some(e.term))",
        ".position(|e| self.term(e.index).is_none())"),
    "lead-before-own-vote-durable": ("election.rs",
        "if self.tracker.voted_for_myself() {",
        "if self.role == Role::Candidate {"),
    "follower-commit-beyond-new-entries": ("replication.rs",
        "self.log.commit_to(m.commit.min(last_new));",
        "self.log.commit_to(m.commit);"),
    "leader-counts-own-undurable-log": ("replication.rs",
        "let index = self.tracker.committed_index(self.log.stable());",
        "let index = self.tracker.committed_index(self.log.last_index());"),
    # Snapshots and compaction.
    "compact-past-applied": [
        ("snapshot.rs",
         "let target = index.saturating_sub(self.cfg.compaction_keep_entries);",
         "let target = self.log.committed();"),
        ("snapshot.rs",
         """            .min(self.log.applied())
            .min(latest);""",
         "            .min(self.log.committed());"),
        ("log.rs",
         "if through <= self.floor.index || through > self.applied {",
         "if through <= self.floor.index || through > self.committed {"),
    ],
    "install-snapshot-older-than-commit": ("snapshot.rs",
        "if snap.index <= committed {",
        "if snap.index == 0 {"),
    "install-ignores-snapshot-term": ("log.rs",
        "let keep = self.matches(snap);",
        "let keep = snap.index <= self.last.index;"),
    "restore-before-install-durable": ("snapshot.rs",
        "if let Some(Held::Restore(meta)) = self.dur.hold(Held::Restore(meta)) {",
        "if let Held::Restore(meta) = Held::Restore(meta) {"),
    "snapshot-beyond-applied": ("snapshot.rs",
        "let index = self.log.applying();",
        "let index = self.log.committed();"),
    # Membership changes.
    "joint-commits-by-new-set-alone": ("quorum.rs",
        "Some(o) => a.min(o.committed_index(acked)),",
        "Some(_) => a,"),
    "removed-leader-keeps-leading": ("reconfig.rs",
        "            self.step_down_removed(out);\n",
        ""),
    "learner-vote-counted": [
        ("tracker.rs",
         "let mut ids = self.voters.ids();",
         "let mut ids: SmallVec<[NodeId; 7]> =\n            self.configs.latest().1.members().into_iter().collect();"),
        ("tracker.rs",
         """        self.voters
            .vote_result(""",
         """        JointConfig::simple(self.configs.latest().1.members())
            .vote_result("""),
    ],
    "two-changes-in-flight": ("reconfig.rs",
        "if index > committed || current.is_joint() {",
        "if false && (index > committed || current.is_joint()) {"),
}

def patch(name):
    """Applies mutant `name`; returns the original sources to restore, or None if a pattern is
    missing (nothing is changed then)."""
    changes = MUTANTS[name]
    if isinstance(changes, tuple):
        changes = [changes]
    originals = {}
    edited = {}
    for fname, old, new in changes:
        path = os.path.join(CORE, fname)
        src = edited.get(path) or open(path).read()
        originals.setdefault(path, src)
        if old not in src:
            print(f"{name}: pattern not found in {fname}", flush=True)
            return None
        edited[path] = src.replace(old, new, 1)
    for path, src in edited.items():
        open(path, "w").write(src)
    return originals

def run(seeds, names):
    results = []
    for name in names:
        originals = patch(name)
        if originals is None:
            results.append((name, "pattern missing"))
            continue
        try:
            t0 = time.time()
            p = subprocess.run(
                ["cargo", "run", "-q", "--release", "-p", "raft-sim", "--", "explore",
                 "--seeds", f"0..{seeds}", "--stop-on-failure", "--no-progress"],
                cwd=ROOT, capture_output=True, text=True)
            dt = time.time() - t0
            found = p.returncode != 0
            first = next((l for l in p.stdout.splitlines() if "FAIL" in l), "")
            print(f"{name}: {'caught' if found else 'NOT caught'} in {dt:.0f}s {first}", flush=True)
            results.append((name, first if found else "not caught"))
        finally:
            for path, src in originals.items():
                open(path, "w").write(src)
    return results

if __name__ == "__main__":
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    names = sys.argv[2:] or list(MUTANTS)
    res = run(seeds, names)
    sys.exit(0 if all(r[1] not in ("not caught", "pattern missing") for r in res) else 1)
