#!/usr/bin/env python3
"""Mutation check of the simulator: break one safety rule of the core at a time and require
`raft-sim explore` to find a failing seed. Usage: scripts/mutants.py [SEEDS] [NAME...]"""
import os, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = os.path.join(ROOT, "raft-proto-core", "src")

MUTANTS = {
    "vote-without-log-check": ("election.rs",
        "if can_vote && self.log.is_up_to_date(rv.last_log) {",
        "if can_vote {"),
    "commit-old-term-by-counting": ("replication.rs",
        "if index > self.log.committed && self.log.term(index) == Some(self.term) {",
        "if index > self.log.committed {"),
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
        "if self.votes.iter().any(|&(id, granted)| id == me && granted) {",
        "if me != 0 {"),
    "follower-commit-beyond-new-entries": ("replication.rs",
        "self.commit_to(m.commit.min(last_new));",
        "self.commit_to(m.commit);"),
    "leader-counts-own-undurable-log": ("replication.rs",
        "let stable = self.log.stable;",
        "let stable = self.log.last_index();"),
}

def run(seeds, names):
    results = []
    for name in names:
        fname, old, new = MUTANTS[name]
        path = os.path.join(CORE, fname)
        src = open(path).read()
        if old not in src:
            print(f"{name}: pattern not found in {fname}", flush=True)
            results.append((name, "pattern missing"))
            continue
        open(path, "w").write(src.replace(old, new, 1))
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
            open(path, "w").write(src)
    return results

if __name__ == "__main__":
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    names = sys.argv[2:] or list(MUTANTS)
    res = run(seeds, names)
    sys.exit(0 if all(r[1] not in ("not caught", "pattern missing") for r in res) else 1)
