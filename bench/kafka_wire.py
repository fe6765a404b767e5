#!/usr/bin/env python3
"""Kafka protocol benchmark: produce and fetch throughput of a
confluent-kafka (librdkafka) client against the collector's Kafka
listener, and the HTTP ingest and query paths in the same run, on the same
lines; reports figures, asserts nothing.

Input: the first --bytes of ../shared/bench/make-bigfile.py's file (lines
without their newlines, as record values). One collector, fsync always,
one partition per topic. Paths measured, each on its own topic:

  kafka produce   confluent Producer, acks=all, idempotent, linger 5 ms,
                  compression none and gzip level 1
  kafka fetch     confluent Consumer (group, from the beginning) reading a
                  topic written by the Kafka producer, and one written by
                  HTTP ingest (gzip batches, served as on disk); and
                  kcat (librdkafka in C, no Python per message) likewise
  http ingest     RecordBatch v2 bodies (kafka-python's builder, gzip 1,
                  1 MiB of lines each, built before timing), 4 concurrent posters
  http query      `logpost query TOPIC --output raw` to /dev/null

MiB/s counts raw line bytes. Prints a markdown table for bench/RESULTS.md.

(Not named kafka.py: that would shadow the kafka-python package.)

usage: bench/kafka_wire.py [--bytes N]      (build first: cargo build --release)
"""
import argparse, concurrent.futures, os, subprocess, sys, tempfile, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BIN = os.path.join(ROOT, "target", "release")
sys.path.insert(0, HERE)
from pipeline import bigfile, cpu_seconds  # noqa: E402

from confluent_kafka import Consumer, Producer  # noqa: E402
from kafka.record.default_records import DefaultRecordBatchBuilder  # noqa: E402

MiB = 1 << 20


def read_lines(path, nbytes):
    with open(path, "rb") as f:
        data = f.read(nbytes)
    lines = [l.rstrip(b"\r") for l in data.split(b"\n")[:-1]]
    return lines, sum(len(l) for l in lines)


def start_collector(work):
    cfg = os.path.join(work, "collector.toml")
    with open(cfg, "w") as f:
        f.write(f'data_dir = "{work}/data"\n[kafka]\nlisten = "127.0.0.1:0"\n'
                '[http]\nmax_body_bytes = "64MiB"\n')
    proc = subprocess.Popen([os.path.join(BIN, "logpost-collector"), "--config", cfg, "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=open(os.path.join(work, "collector.err"), "w"), text=True)
    kafka = url = None
    while url is None:
        line = proc.stdout.readline()
        if not line:
            sys.exit("collector exited; see " + work)
        if line.startswith("logpost-collector kafka listening on "):
            kafka = line.split()[-1]
        if line.startswith("logpost-collector listening on "):
            url = line.split()[-1]
    return proc, url, kafka


class Cpu:
    def __init__(self, pid):
        self.pid, self.start, self.t0 = pid, cpu_seconds(pid), time.time()

    def stop(self):
        return time.time() - self.t0, cpu_seconds(self.pid) - self.start


def kafka_produce(bootstrap, topic, lines, compression):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "batch.size": 1 << 20, "compression.type": compression,
                  "compression.level": 1 if compression == "gzip" else -1,
                  "queue.buffering.max.kbytes": 1 << 20, "partitioner": "consistent_random"})
    # poll() only every thousand messages: per message it costs the Python
    # loop more than the produce itself.
    for i, l in enumerate(lines):
        while True:
            try:
                p.produce(topic, value=l, partition=0)
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    if p.flush(600):
        sys.exit("kafka produce: messages left undelivered")


def kafka_fetch(bootstrap, topic, count):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{topic}-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.max.bytes": 50 * MiB, "max.partition.fetch.bytes": 16 * MiB})
    c.subscribe([topic])
    n = 0
    while n < count:
        for m in c.consume(10000, 1.0):
            if not m.error():
                n += 1
    c.close()


def http_bodies(lines):
    """RecordBatch v2 bodies, built before timing: kafka-python's builder is
    pure Python and would be what the figure measured."""
    chunks, cur, size = [], [], 0
    for l in lines:
        cur.append(l)
        size += len(l)
        if size >= MiB:
            chunks.append(cur)
            cur, size = [], 0
    if cur:
        chunks.append(cur)
    bodies = []
    ts = int(time.time() * 1000)
    for chunk in chunks:
        b = DefaultRecordBatchBuilder(magic=2, compression_type=1, is_transactional=False,
                                      producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                      batch_size=1 << 30)
        for i, l in enumerate(chunk):
            b.append(i, timestamp=ts, key=None, value=l, headers=[])
        bodies.append(bytes(b.build()))
    return bodies


def http_ingest(url, topic, bodies):
    def post(body):
        req = urllib.request.Request(f"{url}/v1/ingest/{topic}", data=body, method="POST",
                                     headers={"Content-Type": "application/vnd.kafka.record-batch.v2"})
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(post, bodies))


def kcat_fetch(bootstrap, topic):
    subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\\n"],
                   stdout=subprocess.DEVNULL, check=True)


def http_query(url, topic):
    subprocess.run([os.path.join(BIN, "logpost"), "--collector", url, "query", topic, "--limit", "0",
                    "--output", "raw"], stdout=subprocess.DEVNULL, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bytes", type=int, default=256 * MiB)
    args = ap.parse_args()
    lines, raw = read_lines(bigfile(1 << 30), args.bytes)
    work = tempfile.mkdtemp(prefix="logpost-kafka-bench-", dir=os.path.join(HERE, "out"))
    proc, url, kafka = start_collector(work)
    rows = []

    def measure(name, fn, *a):
        cpu = Cpu(proc.pid)
        fn(*a)
        wall, coll = cpu.stop()
        rows.append((name, raw / MiB / wall, len(lines) / wall, coll / (raw / (1 << 30))))
        print(f"{name}: {raw / MiB / wall:.1f} MiB/s", file=sys.stderr)

    try:
        measure("kafka produce (none)", kafka_produce, kafka, "kp-none", lines, "none")
        measure("kafka produce (gzip)", kafka_produce, kafka, "kp-gzip", lines, "gzip")
        bodies = http_bodies(lines)
        measure("http ingest (gzip 1)", http_ingest, url, "http", bodies)
        measure("kafka fetch, confluent consumer (topic from kafka, none)", kafka_fetch, kafka, "kp-none", len(lines))
        measure("kafka fetch, confluent consumer (topic from http, gzip)", kafka_fetch, kafka, "http", len(lines))
        measure("kafka fetch, kcat to /dev/null (topic from kafka, none)", kcat_fetch, kafka, "kp-none")
        measure("kafka fetch, kcat to /dev/null (topic from http, gzip)", kcat_fetch, kafka, "http")
        measure("http query --output raw (topic from http)", http_query, url, "http")
    finally:
        proc.terminate()
        proc.wait()
    print(f"\n{len(lines):,} lines, {raw / MiB:.0f} MiB of raw line bytes\n")
    print("| path | MiB/s | lines/s | collector CPU-s/GiB |")
    print("| --- | --- | --- | --- |")
    for name, mibs, lps, cpu in rows:
        print(f"| {name} | {mibs:.1f} | {lps:,.0f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
