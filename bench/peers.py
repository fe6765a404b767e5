#!/usr/bin/env python3
"""logpost-agent and Fluent Bit side by side (issue 4): the same inputs,
shipped to the same logpost collector on this host, one after the other;
figures only, nothing asserted.

Scenarios (as in bench/pipeline.py and bench/agent.py):
  big      the 1 GiB benchmark file
  many     1,000 files of ~1 MiB cut from it
  idle10k  10,000 files of 3 lines: shipped, then idle
  idle1    one file: shipped, then idle

logpost-agent ships RecordBatch bodies (gzip 1) to /v1/ingest; Fluent Bit
(`fluent-bit` on PATH; it is not packaged for Debian, so build it outside
the project) ships with its `loki` output (JSON, gzip) to the collector's
Loki push API, which stores every line as a record just the same
(`fluent-bit`), and, as the issue's peer figures were measured, with its
`http` output (json_lines, gzip) to a sink in this script that only counts
lines (`fluent-bit-http`: no collector work on the shared cores). Each run
starts a fresh collector; throughput counts raw bytes from agent start
until the collector holds every line. Fluent Bit's settings are its
documented tuning for throughput: 1 MiB tail buffers, an in-memory buffer
limit, `Refresh_Interval 5` as logpost's `glob_interval`.

usage: bench/peers.py [big] [many] [idle10k] [idle1] [--only logpost|fluent-bit|fluent-bit-http]
                     [--idle-seconds N]
       (build first: cargo build --release)
"""
import argparse, gzip, http.server, os, shutil, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeline import BIN, HERE, bigfile, count_lines, cpu_seconds, http_json, peak_rss_mib, rss_mib  # noqa: E402
from agent import threads  # noqa: E402

LINE = b"2026-11-25T12:00:00.000Z INFO http: GET /api/items/42 status=200 user=alice latency_ms=37\n"


def start_collector(work):
    cfg = os.path.join(work, "collector.toml")
    with open(cfg, "w") as f:
        f.write(f'data_dir = "{work}/collector"\n[http]\nlisten = "127.0.0.1:0"\n'
                '[loki]\nroute_by = "default"\ndefault_topic = "bench"\n')
    coll = subprocess.Popen([os.path.join(BIN, "logpost-collector"), "--config", cfg],
                            stdout=subprocess.PIPE, stderr=open(os.path.join(work, "collector.log"), "w"), text=True)
    line = coll.stdout.readline()
    if not line.startswith("logpost-collector listening on "):
        sys.exit("collector did not start; see " + work)
    return coll, line.split()[-1]


def start_logpost(work, glob, url):
    cfg = os.path.join(work, "agent.toml")
    with open(cfg, "w") as f:
        f.write(f'data_dir = "{work}/agent"\n[collector]\nurls = ["{url}"]\n'
                f'[[sources]]\nname = "bench"\npaths = ["{glob}"]\ntopic = "bench"\n')
    return subprocess.Popen([os.path.join(BIN, "logpost-agent"), "--config", cfg],
                            stderr=open(os.path.join(work, "agent.log"), "w"))


# The two Fluent Bit setups differ only in their [OUTPUT] section.
FLUENT_BIT_OUTPUTS = {
    # to the collector's Loki push API
    "loki": """    name            loki
    labels          job=fluent-bit
    line_format     key_value
    drop_single_key raw
""",
    # to CountingSink, as the peer figures were measured
    "http": """    name      http
    uri       /
    format    json_lines
""",
}


def start_fluent_bit(work, glob, url, output="loki"):
    host, port = url.removeprefix("http://").rsplit(":", 1)
    cfg = os.path.join(work, "fluent-bit.conf")
    with open(cfg, "w") as f:
        f.write(f"""[SERVICE]
    flush        1
    log_level    warn
    http_server  off
[INPUT]
    name              tail
    path              {glob}
    read_from_head    true
    db                {work}/fluent-bit.db
    refresh_interval  5
    buffer_chunk_size 1MB
    buffer_max_size   1MB
    mem_buf_limit     64MB
[OUTPUT]
{FLUENT_BIT_OUTPUTS[output]}    match    *
    host     {host}
    port     {port}
    compress gzip
    workers  1
""")
    return subprocess.Popen(["fluent-bit", "-c", cfg], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "fluent-bit.log"), "w"))


class CountingSink(http.server.ThreadingHTTPServer):
    """Takes Fluent Bit's http output (gzip json_lines) and counts lines."""

    def __init__(self):
        self.lines = 0
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(h):
                body = h.rfile.read(int(h.headers.get("Content-Length", 0)))
                if h.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                with self.lock:
                    self.lines += body.count(b"\n")
                h.send_response(200)
                h.send_header("Content-Length", "0")
                h.end_headers()

            def log_message(h, *a):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


def start_fluent_bit_http(work, glob, url):
    return start_fluent_bit(work, glob, url, output="http")


def wait_stored(url, agent, lines, work, sink=None):
    stored = 0
    while stored < lines:
        time.sleep(0.05)
        if sink is not None:
            stored = sink.lines
        else:
            try:
                stored = http_json(f"{url}/v1/topics/bench")["records"]
            except Exception:
                pass
        if agent.poll() is not None:
            sys.exit(f"agent exited early; see {work}")
    return stored


def stop(*procs):
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def prepare(scenario, logs):
    """Fills `logs`; returns (glob, bytes, lines)."""
    os.makedirs(logs)
    if scenario == "big":
        src = bigfile(1 << 30)
        os.link(src, os.path.join(logs, "big.log"))
        return f"{logs}/*.log", os.path.getsize(src), count_lines(src)
    if scenario == "many":
        d = os.path.join(HERE, "out", "many")
        if not os.path.isdir(d):
            sys.exit("run bench/agent.py many once first: it cuts the 1,000 files")
        size = lines = 0
        for n in sorted(os.listdir(d)):
            os.link(os.path.join(d, n), os.path.join(logs, n))
            size += os.path.getsize(os.path.join(d, n))
            lines += count_lines(os.path.join(d, n))
        return f"{logs}/*.log", size, lines
    n = 10_000 if scenario == "idle10k" else 1
    for i in range(n):
        with open(os.path.join(logs, f"f{i:05}.log"), "wb") as f:
            f.write(LINE * 3)
    return f"{logs}/*.log", n * 3 * len(LINE), n * 3


def run(kind, scenario, idle_seconds):
    work = tempfile.mkdtemp(prefix=f"peers-{kind}-{scenario}-", dir=os.path.join(HERE, "out"))
    try:
        glob, size, lines = prepare(scenario, os.path.join(work, "logs"))
        sink = CountingSink() if kind == "fluent-bit-http" else None
        coll, url = start_collector(work)
        t0 = time.monotonic()
        start = {"logpost": start_logpost, "fluent-bit": start_fluent_bit, "fluent-bit-http": start_fluent_bit_http}[kind]
        agent = start(work, glob, sink.url if sink else url)
        wait_stored(url, agent, lines, work, sink)
        elapsed = time.monotonic() - t0
        a_cpu, a_peak = cpu_seconds(agent.pid), peak_rss_mib(agent.pid)
        c_cpu = cpu_seconds(coll.pid)
        if scenario in ("big", "many"):
            gib = size / (1 << 30)
            row = (f"{size / (1 << 20) / elapsed:.1f} MiB/s; agent {a_cpu / gib:.2f} CPU-s/GiB, peak RSS {a_peak:.1f} MiB; "
                   + ("sink: counts lines only" if sink else f"collector {c_cpu / gib:.2f} CPU-s/GiB"))
        else:
            time.sleep(35)  # past idle-handle closing (logpost: 30 s)
            cpu0 = cpu_seconds(agent.pid)
            time.sleep(idle_seconds)
            cpu = cpu_seconds(agent.pid) - cpu0
            fds = len(os.listdir(f"/proc/{agent.pid}/fd"))
            row = (f"shipped {lines} lines in {elapsed:.1f} s; idle: RSS {rss_mib(agent.pid):.1f} MiB (peak {a_peak:.1f}), "
                   f"{fds} descriptors, {threads(agent.pid)} threads, CPU {100 * cpu / idle_seconds:.2f}% of a core")
        stop(agent, coll)
        if sink:
            sink.shutdown()
        return row
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenarios", nargs="*", default=["big", "many", "idle10k", "idle1"])
    ap.add_argument("--only", choices=["logpost", "fluent-bit", "fluent-bit-http"])
    ap.add_argument("--idle-seconds", type=int, default=30)
    args = ap.parse_args()
    kinds = [args.only] if args.only else ["logpost", "fluent-bit", "fluent-bit-http"]
    if not shutil.which("fluent-bit"):
        print("fluent-bit is not on PATH: logpost only", file=sys.stderr)
        kinds = [k for k in kinds if k == "logpost"]
    version = ""
    if any(k != "logpost" for k in kinds):
        version = subprocess.run(["fluent-bit", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    commit = subprocess.run(["git", "-C", os.path.dirname(HERE), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"peers, {time.strftime('%Y-%m-%d')}, commit {commit}{', ' + version if version else ''}")
    print("| scenario | agent | figures |\n| --- | --- | --- |")
    for s in args.scenarios:
        for k in kinds:
            print(f"| {s} | {k} | {run(k, s, args.idle_seconds)} |", flush=True)


if __name__ == "__main__":
    main()
