#!/usr/bin/env python3
"""Collector recovery time after SIGKILL with a large store (figures only).

Fills one partition with N GiB (default 10) of incompressible batches over
HTTP from several threads, kills the collector with SIGKILL right after the
last acknowledgement, restarts it and measures the time from exec to
"listening" (store opened, every partition recovered). Also reports a clean
restart (SIGTERM, final checkpoint) for comparison.

usage: bench/recovery.py [--gib N] [--keep]     (build first: cargo build --release)
"""
import argparse, os, random, shutil, signal, subprocess, sys, tempfile, threading, time, urllib.request

from kafka.record.default_records import DefaultRecordBatchBuilder

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(os.path.dirname(HERE), "target", "release", "logpost-collector")
CT = "application/vnd.kafka.record-batch.v2"


def make_batch(seed):
    rng = random.Random(seed)
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for i in range(250):
        b.append(i, 1_700_000_000_000 + i, None, rng.randbytes(1000), [])
    return bytes(b.build())


def start(cfg, log):
    t0 = time.monotonic()
    p = subprocess.Popen([BIN, "--config", cfg], stdout=subprocess.PIPE, stderr=open(log, "a"), text=True)
    line = p.stdout.readline()
    elapsed = time.monotonic() - t0
    if not line.startswith("logpost-collector listening on "):
        sys.exit("collector did not start; see " + log)
    return p, line.split()[-1], elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=10)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    work = tempfile.mkdtemp(prefix="recovery-", dir=os.path.join(HERE, "out"))
    try:
        cfg = os.path.join(work, "collector.toml")
        with open(cfg, "w") as f:
            f.write(f'data_dir = "{work}/data"\n[http]\nlisten = "127.0.0.1:0"\n[storage]\nretention_age = "forever"\n')
        log = os.path.join(work, "collector.log")
        p, url, _ = start(cfg, log)
        batches = [make_batch(s) for s in range(16)]
        target = int(args.gib * (1 << 30))
        sent = [0]
        lock = threading.Lock()

        def writer(k):
            i = k
            while True:
                with lock:
                    if sent[0] >= target:
                        return
                    sent[0] += len(batches[0])
                body = batches[i % len(batches)]
                i += 1
                req = urllib.request.Request(f"{url}/v1/ingest/big?partition=0", data=body, headers={"Content-Type": CT})
                urllib.request.urlopen(req, timeout=60).read()

        t0 = time.monotonic()
        threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        fill = time.monotonic() - t0
        print(f"filled {sent[0] / (1 << 30):.2f} GiB in {fill:.1f} s ({sent[0] / (1 << 20) / fill:.0f} MiB/s over HTTP, 8 threads)")
        p.send_signal(signal.SIGKILL)
        p.wait()
        p, url, elapsed = start(cfg, log)
        print(f"restart after SIGKILL: {elapsed * 1000:.0f} ms until listening")
        p.send_signal(signal.SIGTERM)
        p.wait()
        p, url, elapsed = start(cfg, log)
        print(f"restart after SIGTERM (clean): {elapsed * 1000:.0f} ms until listening")
        p.send_signal(signal.SIGTERM)
        p.wait()
        with open(log) as f:
            for line in f:
                if "recovered partition" in line:
                    print("log:", line.strip())
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
