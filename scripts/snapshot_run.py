#!/usr/bin/env python3
"""Memory and disk of a 3-node raftkv cluster over a long write run, with snapshots on and off;
restart time after the run; a follower that was down catching up by InstallSnapshot.

    scripts/snapshot_run.py [--writes N] [--keys K] [--out DIR] [--modes on,off]

For each mode it starts three `raftkv serve` processes on loopback (fsync on, default settings
but for the snapshot policy), runs `raftkv bench --count N` (100-byte values over K keys, 64
clients) and samples every node's resident memory (VmRSS), its redb file's size and the
cluster's commit index twice a second. Then it SIGKILLs a follower and restarts it, timing how
long until it answers and until it has applied what the leader committed. Finally, with
snapshots on, one follower is down during a whole run and restarted under a continuous load:
its catch-up time, the snapshot's size and the cluster's write rate before and during the
catch-up are measured.

Writes CSV samples and a JSON summary to DIR (default target/snapshot-run) and draws
docs/snapshot-memory.svg with scripts/plot_snapshot_run.py.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "raftkv")


def metrics(port):
    """The node's Prometheus metrics as {name: value} (labels dropped), or None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            body = r.read().decode()
    except OSError:
        return None
    out = {}
    for line in body.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if m and "quantile" not in (m.group(2) or "") and "le=" not in (m.group(2) or ""):
            try:
                out[m.group(1)] = float(m.group(3))
            except ValueError:
                pass
    return out


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


class Cluster:
    def __init__(self, work, snapshots):
        self.work = work
        self.base = 20000 + (os.getpid() * 7) % 20000
        self.procs = {}
        subprocess.run([BIN, "certs", "--out", f"{work}/certs", "--nodes", "1,2,3",
                        "--clients", "client"], check=True, stdout=subprocess.DEVNULL)
        policy = "" if snapshots else "[snapshot]\nafter_entries = 0\nafter_bytes = 0\n"
        for i in (1, 2, 3):
            peers = "".join(f"[[peers]]\nid = {j}\naddr = \"127.0.0.1:{self.base + j}\"\n"
                            for j in (1, 2, 3))
            with open(f"{work}/node-{i}.toml", "w") as f:
                f.write(f"""node_id = {i}
cluster_id = 77
data_dir = "{work}/node-{i}"
listen = "127.0.0.1:{self.base + i}"
metrics = "127.0.0.1:{self.base + 100 + i}"

[tls]
ca = "{work}/certs/ca.pem"
cert = "{work}/certs/node-{i}.pem"
key = "{work}/certs/node-{i}.key"

{peers}
{policy}""")
        self.env = dict(os.environ,
                        RAFTKV_NODES=",".join(f"127.0.0.1:{self.base + j}" for j in (1, 2, 3)),
                        RAFTKV_CLUSTER_ID="77", RAFTKV_CERTS=f"{work}/certs")

    def start(self, i):
        log = open(f"{self.work}/node-{i}.log", "a")
        self.procs[i] = subprocess.Popen(
            [BIN, "serve", "--threads", "1", "--config", f"{self.work}/node-{i}.toml"],
            stdout=log, stderr=log, env=dict(os.environ, RUST_LOG="info"))
        return time.monotonic()

    def kill(self, i):
        p = self.procs.pop(i)
        p.send_signal(signal.SIGKILL)
        p.wait()

    def stop_all(self):
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            p.wait()
        self.procs = {}

    def port(self, i):
        return self.base + 100 + i

    def leader(self):
        for i in self.procs:
            m = metrics(self.port(i))
            if m and m.get("raft_is_leader") == 1.0:
                return i, m
        return None, None

    def wait_leader(self, limit=30):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            i, m = self.leader()
            if i:
                return i, m
            time.sleep(0.1)
        raise SystemExit("no leader")

    def db_size(self, i):
        try:
            return os.path.getsize(f"{self.work}/node-{i}/raft.redb") / 1e6
        except OSError:
            return None

    def bench(self, args):
        return subprocess.Popen([BIN, "bench", "--clients", "64", "--value-size", "100",
                                 "--quiet", "--json"] + args,
                                env=self.env, stdout=subprocess.PIPE, text=True)


def sample_while(cluster, proc, t0, rows, mode, every=0.5):
    while proc.poll() is None:
        _, lead = cluster.leader()
        commit = lead.get("raft_commit_index") if lead else None
        for i, p in list(cluster.procs.items()):
            m = metrics(cluster.port(i)) or {}
            rows.append({
                "mode": mode, "t": round(time.monotonic() - t0, 2), "node": i,
                "commit": commit, "rss_mb": rss_mb(p.pid), "db_mb": cluster.db_size(i),
                "snapshot": m.get("raft_snapshot_index"), "log_entries": m.get("raft_log_entries"),
                "log_mem_bytes": m.get("raft_log_memory_bytes"),
            })
        time.sleep(every)


def started_at(cluster, i, after):
    """Wall-clock time of the last "node started" line node `i` logged after `after`."""
    import datetime
    try:
        text = open(f"{cluster.work}/node-{i}.log").read()
    except OSError:
        return None
    found = None
    for line in text.splitlines():
        if "node started" not in line:
            continue
        stamp = line.split()[0].rstrip("Z")
        try:
            t = datetime.datetime.fromisoformat(stamp).replace(
                tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            continue
        if t >= after:
            found = t
    return found


def restart_time(cluster, victim):
    """SIGKILL `victim` and restart it. Seconds from the process's start until it listens
    (storage recovered, state machine restored; from its log), until it has applied the log it
    recovered (its own commit index; metrics polled every 10 ms), and until it has applied
    everything the leader committed (the leader's link redials with a backoff of up to a
    second, which this last figure includes)."""
    _, lead = cluster.wait_leader()
    target = lead["raft_commit_index"]
    cluster.kill(victim)
    wall0 = time.time()
    t0 = cluster.start(victim)
    replayed = caught_up = None
    while time.monotonic() - t0 < 120 and caught_up is None:
        now = time.monotonic() - t0
        m = metrics(cluster.port(victim))
        if m is not None:
            applied, commit = m.get("raft_applied_index", 0), m.get("raft_commit_index", 0)
            if replayed is None and commit > 0 and applied >= commit:
                replayed = now
            if applied >= target:
                caught_up = now
        time.sleep(0.01)
    listening = started_at(cluster, victim, wall0)
    return {"listens_s": None if listening is None else listening - wall0,
            "replayed_own_log_s": replayed, "caught_up_s": caught_up, "entries": target}


def snapshot_log(work):
    """What the nodes logged of the snapshots they took: how long applying paused for the
    point-in-time copy, and how long writing each one out took."""
    pauses, took, sizes = [], [], []
    for i in (1, 2, 3):
        try:
            text = open(f"{work}/node-{i}.log").read()
        except OSError:
            continue
        for line in text.splitlines():
            if "snapshot taken" not in line:
                continue
            m = re.search(r"pause_us=(\d+)", line)
            t = re.search(r"took_ms=(\d+)", line)
            b = re.search(r"bytes=(\d+)", line)
            if m and t and b:
                pauses.append(int(m.group(1)))
                took.append(int(t.group(1)))
                sizes.append(int(b.group(1)))
    if not pauses:
        return None
    pauses.sort()
    took.sort()
    return {"count": len(pauses), "pause_us_median": pauses[len(pauses) // 2],
            "pause_us_max": pauses[-1], "write_ms_median": took[len(took) // 2],
            "write_ms_max": took[-1], "bytes_max": max(sizes)}


def run_mode(mode, writes, keys, out):
    work = tempfile.mkdtemp(prefix=f"raftkv-snap-{mode}-")
    cluster = Cluster(work, snapshots=(mode == "on"))
    rows = []
    try:
        for i in (1, 2, 3):
            cluster.start(i)
        leader, _ = cluster.wait_leader()
        t0 = time.monotonic()
        bench = cluster.bench(["--count", str(writes), "--keys", str(keys), "--warmup", "0"])
        sample_while(cluster, bench, t0, rows, mode)
        result = json.loads(bench.stdout.read().strip().splitlines()[-1])
        follower = next(i for i in (3, 2, 1) if i != leader)
        restart = restart_time(cluster, follower)
        final = {i: {"rss_mb": rss_mb(p.pid), "db_mb": cluster.db_size(i)}
                 for i, p in cluster.procs.items()}
        return rows, {"bench": result, "restart": restart, "final": final,
                      "snapshots": snapshot_log(work)}
    finally:
        cluster.stop_all()
        if not os.environ.get("KEEP"):
            subprocess.run(["rm", "-rf", work])


def catch_up(writes, keys):
    """A follower down during `writes` writes, restarted under load."""
    work = tempfile.mkdtemp(prefix="raftkv-catchup-")
    cluster = Cluster(work, snapshots=True)
    try:
        for i in (1, 2, 3):
            cluster.start(i)
        leader, _ = cluster.wait_leader()
        follower = next(i for i in (3, 2, 1) if i != leader)
        cluster.kill(follower)
        bench = cluster.bench(["--count", str(writes), "--keys", str(keys), "--warmup", "0"])
        bench.wait()
        load = cluster.bench(["--duration", "30", "--keys", str(keys), "--warmup", "0"])
        series = []
        t0 = time.monotonic()
        restarted = caught = None
        snap = None
        while load.poll() is None:
            _, lead = cluster.leader()
            now = time.monotonic() - t0
            if lead:
                series.append((now, lead["raft_commit_index"]))
            if restarted is None and now >= 8:
                cluster.start(follower)
                restarted = now
            if restarted is not None and caught is None and lead:
                m = metrics(cluster.port(follower))
                if m and m.get("raft_snapshots_installed_total", 0) >= 1 \
                        and m.get("raft_applied_index", 0) >= lead["raft_commit_index"] - 2000:
                    caught = now
                    snap = {k: m.get(k) for k in ("raft_snapshot_index", "raft_snapshot_bytes")}
            time.sleep(0.25)

        def rate(a, b):
            pts = [(t, c) for t, c in series if a <= t <= b]
            if len(pts) < 2:
                return None
            return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
        leader_m = metrics(cluster.port(leader)) or {}
        return {
            "restart_at_s": restarted, "caught_up_at_s": caught,
            "catch_up_s": None if caught is None else caught - restarted,
            "writes_per_s_before": rate(2, restarted),
            "writes_per_s_during": rate(restarted, caught) if caught else None,
            "writes_per_s_after": rate(caught, 30) if caught else None,
            "follower_snapshot": snap,
            "leader_snapshot_bytes": leader_m.get("raft_snapshot_bytes"),
            "leader_snapshots_sent": leader_m.get("raft_snapshots_sent_total"),
        }
    finally:
        cluster.stop_all()
        subprocess.run(["rm", "-rf", work])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "snapshot-run"))
    ap.add_argument("--modes", default="on,off")
    ap.add_argument("--no-catch-up", action="store_true")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "raft-driver-tokio"],
                   cwd=ROOT, check=True)
    os.makedirs(args.out, exist_ok=True)
    summary = {"writes": args.writes, "keys": args.keys}
    all_rows = []
    for mode in args.modes.split(","):
        print(f"== snapshots {mode}: {args.writes} writes over {args.keys} keys", flush=True)
        rows, s = run_mode(mode, args.writes, args.keys, args.out)
        all_rows += rows
        summary[mode] = s
        print(json.dumps(s), flush=True)
    if not args.no_catch_up:
        print("== a follower down during the run, restarted under load", flush=True)
        summary["catch_up"] = catch_up(args.writes, args.keys)
        print(json.dumps(summary["catch_up"]), flush=True)
    with open(os.path.join(args.out, "samples.csv"), "w") as f:
        cols = ["mode", "t", "node", "commit", "rss_mb", "db_mb", "snapshot", "log_entries",
                "log_mem_bytes"]
        f.write(",".join(cols) + "\n")
        for r in all_rows:
            f.write(",".join("" if r[c] is None else str(r[c]) for c in cols) + "\n")
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "plot_snapshot_run.py"),
                    os.path.join(args.out, "samples.csv"),
                    os.path.join(ROOT, "docs", "snapshot-memory.svg")], check=True)


if __name__ == "__main__":
    main()
