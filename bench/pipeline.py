#!/usr/bin/env python3
"""End-to-end pipeline benchmark: agent tails one large file and ships it to
a collector on the same host (gzip on, fsync on); reports figures, asserts
nothing.

Input: ../shared/bench/make-bigfile.py's 1 GiB file (the same bytes on which
the peer figures in the issues were measured), generated once into
bench/out/. Prints lines/s, MiB/s of raw log end to end, CPU seconds and
peak RSS of agent and collector, and the compression ratio, as one
markdown table row for bench/RESULTS.md.

usage: bench/pipeline.py [--bytes N] [--keep] [--compression gzip|lz4|snappy|none] [--max-in-flight N]
       (build first: cargo build --release)
"""
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# LOGPOST_BIN: another build's binaries, for before/after runs.
BIN = os.environ.get("LOGPOST_BIN", os.path.join(ROOT, "target", "release"))
MAKE_BIGFILE = os.path.join(ROOT, "..", "shared", "bench", "make-bigfile.py")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime, stime, cutime, cstime are fields 14-17 (1-based) of stat.
    return sum(int(x) for x in fields[11:15]) / TICK


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def http_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def bigfile(nbytes):
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    path = os.path.join(HERE, "out", f"big-{nbytes}.log")
    if not os.path.exists(path):
        print(f"generating {path} ...", file=sys.stderr)
        subprocess.run([sys.executable, MAKE_BIGFILE, path + ".tmp", "--bytes", str(nbytes)], check=True)
        os.rename(path + ".tmp", path)
    return path


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 24)
            if not b:
                break
            n += b.count(b"\n")
    return n


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_counters(port):
    """Requests sent (retries included), acknowledged, and resent in order
    after being sent ahead (batch.max_in_flight), from the agent's metrics."""
    wanted = {"logpost_agent_batches_sent_total": "sent", "logpost_agent_batches_acked_total": "acked",
              "logpost_agent_requests_resent_in_order_total": "resent in order"}
    found = {v: 0.0 for v in wanted.values()}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                name, _, value = line.partition(" ")
                if name in wanted:
                    found[wanted[name]] = float(value)
    except OSError:
        pass
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=1 << 30)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--batch-bytes", default="2MiB")
    ap.add_argument("--compression", default="gzip", help="the agent's batch.compression (gzip, lz4, snappy, none)")
    ap.add_argument("--max-in-flight", type=int, default=None, help="the agent's batch.max_in_flight (default: the agent's)")
    ap.add_argument("--no-dedup", action="store_true", help="collector [ingest] deduplicate = false (at-least-once)")
    args = ap.parse_args()

    src = bigfile(args.bytes)
    size = os.path.getsize(src)
    lines = count_lines(src)
    work = tempfile.mkdtemp(prefix="logpost-bench-", dir=os.path.join(HERE, "out"))
    try:
        logs = os.path.join(work, "logs")
        os.makedirs(logs)
        os.link(src, os.path.join(logs, "big.log"))
        coll_cfg = os.path.join(work, "collector.toml")
        with open(coll_cfg, "w") as f:
            f.write(f'data_dir = "{work}/collector"\n[http]\nlisten = "127.0.0.1:0"\n')
            if args.no_dedup:
                f.write("[ingest]\ndeduplicate = false\n")
        # PERF=agent or PERF=collector records a cpu-clock profile into bench/out/<which>.perf;
        # PERF_CALL_GRAPH=dwarf for callers (release builds have no frame pointers).
        perf = os.environ.get("PERF", "")
        def wrap(which, cmd):
            if perf != which:
                return cmd
            return ["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000",
                    "--call-graph", os.environ.get("PERF_CALL_GRAPH", "fp"), "-o",
                    os.path.join(HERE, "out", which + ".perf"), "--"] + cmd
        coll = subprocess.Popen(wrap("collector", [os.path.join(BIN, "logpost-collector"), "--config", coll_cfg]),
                                stdout=subprocess.PIPE, stderr=open(os.path.join(work, "collector.log"), "w"), text=True)
        url = None
        line = coll.stdout.readline()
        if line.startswith("logpost-collector listening on "):
            url = line.split()[-1]
        if not url:
            sys.exit("collector did not start; see " + work)
        metrics_port = free_port()
        agent_cfg = os.path.join(work, "agent.toml")
        with open(agent_cfg, "w") as f:
            f.write(f'''data_dir = "{work}/agent"
[collector]
urls = ["{url}"]
[batch]
max_bytes = "{args.batch_bytes}"
compression = "{args.compression}"
{f"max_in_flight = {args.max_in_flight}" if args.max_in_flight else ""}
[metrics]
listen = "127.0.0.1:{metrics_port}"
[[sources]]
name = "bench"
paths = ["{logs}/*.log"]
topic = "bench"
''')
        t0 = time.monotonic()
        agent = subprocess.Popen(wrap("agent", [os.path.join(BIN, "logpost-agent"), "--config", agent_cfg]),
                                 stderr=open(os.path.join(work, "agent.log"), "w"))
        stored = 0
        while stored < lines:
            time.sleep(0.05)
            try:
                stored = http_json(f"{url}/v1/topics/bench")["records"]
            except Exception:
                pass
            if agent.poll() is not None:
                sys.exit("agent exited early; see " + work)
        elapsed = time.monotonic() - t0
        a_cpu, c_cpu = cpu_seconds(agent.pid), cpu_seconds(coll.pid)
        a_rss, c_rss = peak_rss_mib(agent.pid), peak_rss_mib(coll.pid)
        stored_bytes = http_json(f"{url}/v1/topics/bench")["size_bytes"]
        requests = agent_counters(metrics_port)
        agent.terminate(); agent.wait()
        coll.terminate(); coll.wait()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    mib = size / (1 << 20)
    gib = size / (1 << 30)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"input: {size} bytes, {lines} lines; agent compression {args.compression}; elapsed {elapsed:.2f} s")
    print(f"throughput: {lines / elapsed:,.0f} lines/s, {mib / elapsed:.1f} MiB/s")
    print(f"agent: {a_cpu:.2f} CPU-s ({a_cpu / gib:.2f} per GiB), peak RSS {a_rss:.1f} MiB")
    print(f"collector: {c_cpu:.2f} CPU-s ({c_cpu / gib:.2f} per GiB), peak RSS {c_rss:.1f} MiB")
    print(f"stored: {stored_bytes} bytes, compression ratio {size / stored_bytes:.2f}")
    print("agent requests: " + ", ".join(f"{k} {v:.0f}" for k, v in requests.items()))
    print()
    print("| date | commit | MiB/s | lines/s | agent CPU-s/GiB | agent RSS MiB | collector CPU-s/GiB | collector RSS MiB | ratio |")
    print(f"| {time.strftime('%Y-%m-%d')} | {commit} | {mib / elapsed:.1f} | {lines / elapsed:,.0f} | {a_cpu / gib:.2f} | "
          f"{a_rss:.1f} | {c_cpu / gib:.2f} | {c_rss:.1f} | {size / stored_bytes:.2f} |")


if __name__ == "__main__":
    main()
