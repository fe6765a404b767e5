#!/usr/bin/env python3
"""Agent scenarios of issue 4 (figures only; nothing asserted):

  many     1,000 files of ~1 MiB (cut from the 1 GiB benchmark input at line
           boundaries), shipped to a collector: MiB/s, CPU, peak RSS
  idle10k  10,000 small files: once shipped, RSS, open descriptors, threads,
           and CPU over an idle window
  idle1    one file: RSS and CPU while idle

usage: bench/agent.py [many] [idle10k] [idle1] [--idle-seconds N]
       (build first: cargo build --release; bench/pipeline.py covers one big file)
"""
import argparse, os, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeline import BIN, HERE, bigfile, count_lines, cpu_seconds, http_json, peak_rss_mib, rss_mib  # noqa: E402


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return -1


def start(work, logs_glob):
    coll_cfg = os.path.join(work, "collector.toml")
    with open(coll_cfg, "w") as f:
        f.write(f'data_dir = "{work}/collector"\n[http]\nlisten = "127.0.0.1:0"\n')
    coll = subprocess.Popen([os.path.join(BIN, "logpost-collector"), "--config", coll_cfg],
                            stdout=subprocess.PIPE, stderr=open(os.path.join(work, "collector.log"), "w"), text=True)
    url = coll.stdout.readline().split()[-1]
    agent_cfg = os.path.join(work, "agent.toml")
    with open(agent_cfg, "w") as f:
        f.write(f'''data_dir = "{work}/agent"
[collector]
urls = ["{url}"]
[batch]
compression = "{COMPRESSION}"
[[sources]]
name = "bench"
paths = ["{logs_glob}"]
topic = "bench"
''')
    t0 = time.monotonic()
    agent = subprocess.Popen([os.path.join(BIN, "logpost-agent"), "--config", agent_cfg],
                             stderr=open(os.path.join(work, "agent.log"), "w"))
    return coll, agent, url, t0


# The agent's batch.compression (--compression).
COMPRESSION = "gzip"


def wait_stored(url, agent, lines):
    stored = 0
    while stored < lines:
        time.sleep(0.05)
        try:
            stored = http_json(f"{url}/v1/topics/bench")["records"]
        except Exception:
            pass
        if agent.poll() is not None:
            sys.exit("agent exited early")


def stop(*procs):
    for p in procs:
        p.terminate()
        p.wait()


def many(work):
    src = bigfile(1 << 30)
    d = os.path.join(HERE, "out", "many")
    if not os.path.isdir(d):
        print("cutting 1,000 files of ~1 MiB ...", file=sys.stderr)
        os.makedirs(d + ".tmp", exist_ok=True)
        with open(src, "rb") as f:
            for i in range(1000):
                chunk = f.read(1 << 20)
                chunk += f.readline()
                with open(os.path.join(d + ".tmp", f"f{i:04}.log"), "wb") as out:
                    out.write(chunk)
        os.rename(d + ".tmp", d)
    files = sorted(os.listdir(d))
    size = sum(os.path.getsize(os.path.join(d, n)) for n in files)
    lines = sum(count_lines(os.path.join(d, n)) for n in files)
    logs = os.path.join(work, "logs")
    os.makedirs(logs)
    for n in files:
        os.link(os.path.join(d, n), os.path.join(logs, n))
    coll, agent, url, t0 = start(work, f"{logs}/*.log")
    wait_stored(url, agent, lines)
    elapsed = time.monotonic() - t0
    a_cpu, a_rss = cpu_seconds(agent.pid), peak_rss_mib(agent.pid)
    c_cpu = cpu_seconds(coll.pid)
    stop(agent, coll)
    gib = size / (1 << 30)
    print(f"many: {len(files)} files, {size} bytes, {lines} lines in {elapsed:.2f} s: {size / (1 << 20) / elapsed:.1f} MiB/s; "
          f"agent {a_cpu / gib:.2f} CPU-s/GiB, peak RSS {a_rss:.1f} MiB; collector {c_cpu / gib:.2f} CPU-s/GiB")


def idle(work, n_files, idle_seconds):
    logs = os.path.join(work, "logs")
    os.makedirs(logs)
    line = b"2026-11-25T12:00:00.000Z INFO http: GET /api/items/42 status=200 user=alice latency_ms=37\n"
    for i in range(n_files):
        with open(os.path.join(logs, f"f{i:05}.log"), "wb") as f:
            f.write(line * 3)
    coll, agent, url, t0 = start(work, f"{logs}/*.log")
    wait_stored(url, agent, 3 * n_files)
    shipped = time.monotonic() - t0
    time.sleep(35)  # past close_idle_after (30 s): idle handles closed
    cpu0 = cpu_seconds(agent.pid)
    time.sleep(idle_seconds)
    cpu = cpu_seconds(agent.pid) - cpu0
    fds = len(os.listdir(f"/proc/{agent.pid}/fd"))
    print(f"idle{n_files}: shipped {3 * n_files} lines in {shipped:.1f} s; then idle: RSS {rss_mib(agent.pid):.1f} MiB "
          f"(peak {peak_rss_mib(agent.pid):.1f}), {fds} open descriptors, {threads(agent.pid)} threads, "
          f"CPU {cpu:.3f} s over {idle_seconds} s ({100 * cpu / idle_seconds:.2f}% of a core)")
    stop(agent, coll)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenarios", nargs="*", default=["many", "idle10k", "idle1"])
    ap.add_argument("--idle-seconds", type=int, default=30)
    ap.add_argument("--compression", default="gzip", help="the agent's batch.compression (gzip, lz4, snappy, none)")
    args = ap.parse_args()
    global COMPRESSION
    COMPRESSION = args.compression
    for s in args.scenarios:
        work = tempfile.mkdtemp(prefix=f"agent-{s}-", dir=os.path.join(HERE, "out"))
        try:
            if s == "many":
                many(work)
            elif s == "idle10k":
                idle(work, 10_000, args.idle_seconds)
            elif s == "idle1":
                idle(work, 1, args.idle_seconds)
            else:
                sys.exit(f"unknown scenario {s}")
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
