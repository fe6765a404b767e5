#!/usr/bin/env python3
"""Query benchmark (issue 6): stores the 1 GiB benchmark file in a collector
with timestamps spread evenly over 24 hours (through Loki's push API, eight
`host` streams), then measures, on that store, one run, figures only:

- scan speed: metric queries over the whole day with a literal filter, a
  regex with a required literal, and a regex without one, as MiB of raw log
  per second of wall time and per collector CPU-second (per core);
- a narrow time-range query's latency (one minute out of the day, limit 100,
  Grafana's shape), median of 5;
- time to the first result of `/v1/query` (what `logpost query` uses);
- the collector's RSS while it streams every record to a client that reads
  them all (memory must not grow with the result).

usage: bench/query.py [--bytes N] [--keep] [--reuse DIR] [--compression gzip|lz4] [--gzip-level N]
       (build first: cargo build --release)

--reuse DIR keeps the store in DIR and, when DIR already holds one from an
earlier run (same --bytes), queries it without pushing again: before/after
runs of two builds then scan the same bytes.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, threading, time
import urllib.parse, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pipeline import BIN, HERE, ROOT, bigfile, cpu_seconds, rss_mib  # noqa: E402

DAY_NS = 86_400 * 10**9
# The last 24 hours: older timestamps would be deleted by age retention
# while the benchmark runs (it did, at 10 GiB).
BASE_NS = (int(time.time()) - 86_400) * 10**9
LINES_PER_PUSH = 20_000
HOSTS = [f"web-{i:02}" for i in range(8)]


def post(url, body, content_type):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()


def get(url, path, **params):
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=600) as r:
        return r.read()


def push_file(url, path):
    """Pushes every line with evenly spaced timestamps; returns (lines, raw bytes)."""
    with open(path, "rb") as f:
        total = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))
    step = DAY_NS // total
    n = raw = 0
    batch = []
    def flush():
        host = HOSTS[(n // LINES_PER_PUSH) % len(HOSTS)]
        body = json.dumps({"streams": [{"stream": {"job": "bench", "host": host}, "values": batch}]})
        post(f"{url}/loki/api/v1/push", body.encode(), "application/json")
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            raw += len(line)
            batch.append([str(BASE_NS + (n + len(batch)) * step), line.decode("utf-8", "replace")])
            if len(batch) == LINES_PER_PUSH:
                flush()
                n += len(batch)
                batch = []
    if batch:
        flush()
        n += len(batch)
    return n, raw


def wait_ready(url, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=10) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit("collector not ready")


def timed(pid, fn):
    c0, t0 = cpu_seconds(pid), time.monotonic()
    out = fn()
    return out, time.monotonic() - t0, cpu_seconds(pid) - c0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=1 << 30)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--reuse", metavar="DIR", help="store in DIR, or query the store already there")
    ap.add_argument("--scans-only", action="store_true", help="only the scan-speed rows (quick before/after runs)")
    ap.add_argument("--compression", default="gzip", help="[loki] compression of a new store (gzip, lz4, snappy, none)")
    ap.add_argument("--gzip-level", type=int, default=1, help="[loki] gzip_level of a new store (1-9)")
    args = ap.parse_args()
    src = bigfile(args.bytes)
    if args.reuse:
        work = os.path.abspath(args.reuse)
        os.makedirs(work, exist_ok=True)
        args.keep = True
    else:
        work = tempfile.mkdtemp(prefix="logpost-qbench-", dir=os.path.join(HERE, "out"))
    meta_path = os.path.join(work, "meta.json")
    meta = None
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("bytes") != args.bytes:
            sys.exit(f"{work} holds a store of {meta.get('bytes')} bytes, not {args.bytes}")
    rows = []
    try:
        cfg = os.path.join(work, "collector.toml")
        with open(cfg, "w") as f:
            f.write(f'data_dir = "{work}/data"\n[http]\nlisten = "127.0.0.1:0"\n'
                    f'[loki]\ncompression = "{args.compression}"\ngzip_level = {args.gzip_level}\n')
        coll = subprocess.Popen([os.path.join(BIN, "logpost-collector"), "--config", cfg],
                                stdout=subprocess.PIPE, stderr=open(os.path.join(work, "collector.log"), "w"), text=True)
        line = coll.stdout.readline()
        if not line.startswith("logpost-collector listening on "):
            sys.exit("collector did not start; see " + work)
        url = line.split()[-1]
        pid = coll.pid

        if meta is None:
            t0 = time.monotonic()
            lines, raw = push_file(url, src)
            print(f"stored {lines} lines, {raw / 2**20:.0f} MiB raw, in {time.monotonic() - t0:.1f} s", file=sys.stderr)
            meta = {"bytes": args.bytes, "lines": lines, "raw": raw, "base_ns": BASE_NS}
            with open(meta_path, "w") as f:
                json.dump(meta, f)
        else:
            lines, raw = meta["lines"], meta["raw"]
            # Recovery and summaries of the reopened store settle first.
            wait_ready(url)
            print(f"reusing {lines} lines, {raw / 2**20:.0f} MiB raw, stored in {work}", file=sys.stderr)
        raw_mib = raw / 2**20
        start, end = meta["base_ns"], meta["base_ns"] + DAY_NS
        # Scan speed: metric queries read every line of the day.
        for name, q in [
            ("literal `|= \"Exception\"`", 'sum(count_over_time({job="bench"} |= "Exception" [1h]))'),
            ("common literal `|= \"INFO\"`", 'sum(count_over_time({job="bench"} |= "INFO" [1h]))'),
            ("regex with a literal `|~ \"(?i)error.*timeout\"`", 'sum(count_over_time({job="bench"} |~ "(?i)error.*timeout" [1h]))'),
            ("regex without one `|~ \"[0-9]{3}-[0-9]{4}\"`", 'sum(count_over_time({job="bench"} |~ "[0-9]{3}-[0-9]{4}" [1h]))'),
            ("regex with an inner literal `|~ \"\\\\d+\\\\.\\\\d+\\\\.\\\\d+\\\\.\\\\d+:\\\\d+\"`",
             r'sum(count_over_time({job="bench"} |~ "\\d+\\.\\d+\\.\\d+\\.\\d+:\\d+" [1h]))'),
            ("regex ending in a literal `|~ \"\\\\w+ failed\"`", r'sum(count_over_time({job="bench"} |~ "\\w+ failed" [1h]))'),
        ]:
            # PERF=1: a cpu-clock profile of the collector during each scan
            # into bench/out/query-scan-N.perf.
            prof = None
            if os.environ.get("PERF"):
                prof = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-p", str(pid),
                                         "-o", os.path.join(HERE, "out", f"query-scan-{len(rows)}.perf")])
                time.sleep(0.5)
            body, wall, cpu = timed(pid, lambda: get(url, "/loki/api/v1/query_range", query=q, start=start, end=end, step=3600))
            if prof:
                prof.send_signal(2)
                prof.wait()
            result = json.loads(body)["data"]["result"]
            matched = sum(float(v[1]) for r in result for v in r["values"])
            rows.append((f"scan, {name}: {matched:,.0f} lines matched",
                         f"{raw_mib / wall:,.0f} MiB/s wall, {raw_mib / cpu:,.0f} MiB/s per core ({cpu:.2f} CPU-s, {wall:.2f} s)"))
        # A needle search as Grafana's Explore sends it (newest first, limit
        # 100) for a string no line holds: every block is read.
        body, wall, cpu = timed(pid, lambda: get(url, "/loki/api/v1/query_range", query='{job="bench"} |= "no-such-request-id"',
                                                 start=start, end=end, limit=100, direction="backward"))
        found = sum(len(r["values"]) for r in json.loads(body)["data"]["result"])
        rows.append((f"needle search, newest first, `|= \"no-such-request-id\"` (limit 100): {found} lines",
                     f"{raw_mib / wall:,.0f} MiB/s wall, {raw_mib / cpu:,.0f} MiB/s per core ({cpu:.2f} CPU-s, {wall:.2f} s)"))
        # The same needle through /v1/query oldest first (what `logpost query
        # --output raw` into a pipe asks for): every partition merged by time.
        def needle_forward():
            q = urllib.parse.urlencode({"query": '{job="bench"} |= "no-such-request-id"', "limit": 0})
            with urllib.request.urlopen(f"{url}/v1/query?{q}", timeout=600) as r:
                return r.read()
        body, wall, cpu = timed(pid, needle_forward)
        found = body.count(b"\n")
        rows.append((f"needle search, oldest first, `/v1/query` `|= \"no-such-request-id\"`: {found} lines",
                     f"{raw_mib / wall:,.0f} MiB/s wall, {raw_mib / cpu:,.0f} MiB/s per core ({cpu:.2f} CPU-s, {wall:.2f} s)"))
        if args.scans_only:
            coll.terminate()
            coll.wait()
            return print_rows(rows, raw_mib, lines)
        # A narrow time range: one minute in the middle of the day.
        mid = start + DAY_NS // 2
        for name, q in [("`{job=\"bench\"}`", '{job="bench"}'),
                        ("`{job=\"bench\", host=\"web-03\"} |= \"error\"`", '{job="bench", host="web-03"} |= "error"')]:
            times = []
            for _ in range(5):
                _, wall, _ = timed(pid, lambda: get(url, "/loki/api/v1/query_range", query=q, start=mid, end=mid + 60 * 10**9, limit=100, direction="backward"))
                times.append(wall * 1000)
            rows.append((f"narrow range (1 min of 24 h, limit 100), {name}", f"median {statistics.median(times):.1f} ms (min {min(times):.1f})"))
        # The newest 100 of the whole day, as Grafana's Explore asks for a
        # wide range (backward, limit): only the newest data is needed.
        for name, path, params in [
            ("Loki query_range", "/loki/api/v1/query_range",
             {"query": '{job="bench"}', "start": start, "end": end, "limit": 100, "direction": "backward"}),
            ("/v1/query", "/v1/query", {"query": '{job="bench"}', "limit": 100, "direction": "backward"}),
        ]:
            times = []
            for _ in range(5):
                _, wall, _ = timed(pid, lambda: get(url, path, **params))
                times.append(wall * 1000)
            rows.append((f"newest 100 of 24 h (backward), {name}", f"median {statistics.median(times):.1f} ms (min {min(times):.1f})"))
        # Time to the first result, and memory while streaming everything.
        for name, q in [("match all", '{job="bench"}'), ("selective `|= \"Exception\"`", '{job="bench"} |= "Exception"')]:
            t0 = time.monotonic()
            with urllib.request.urlopen(f"{url}/v1/query?{urllib.parse.urlencode({'query': q, 'limit': 0})}", timeout=600) as r:
                r.readline()
                first = time.monotonic() - t0
            rows.append((f"time to first result, /v1/query {name}", f"{first * 1000:.1f} ms"))
        peak, samples, done = [0.0], [], threading.Event()
        def sample():
            while not done.is_set():
                v = rss_mib(pid)
                samples.append(v)
                peak[0] = max(peak[0], v)
                time.sleep(0.05)
        before = rss_mib(pid)
        sampler = threading.Thread(target=sample)
        sampler.start()
        t0, streamed, records = time.monotonic(), 0, 0
        everything = urllib.parse.urlencode({"query": '{job="bench"}', "limit": 0})
        with urllib.request.urlopen(f"{url}/v1/query?{everything}", timeout=3600) as r:
            for chunk in iter(lambda: r.read(1 << 20), b""):
                streamed += len(chunk)
                records += chunk.count(b"\n")
        wall = time.monotonic() - t0
        done.set()
        sampler.join()
        rows.append(("stream every record (/v1/query, NDJSON)",
                     f"{records:,} records, {streamed / 2**20:,.0f} MiB NDJSON in {wall:.1f} s; collector RSS {before:.0f} MiB before, peak {peak[0]:.0f} MiB during, "
                     f"median {statistics.median(samples):.0f} MiB"))
        coll.terminate()
        coll.wait()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_rows(rows, raw_mib, lines)


def print_rows(rows, raw_mib, lines):
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"query benchmark, {time.strftime('%Y-%m-%d')}, commit {commit}, {raw_mib:,.0f} MiB raw stored ({lines:,} lines over 24 h)")
    print("| measure | figure |\n|---|---|")
    for k, v in rows:
        k = k.replace("|", "\\|")  # a pipe inside a cell ends it in markdown
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
