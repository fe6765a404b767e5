#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/seeds/<target>/) from
the project's own fixtures and tests: kafka-python batches of every codec
(shared/tests/fixtures), the corpus logs (tests/corpus/loghub), LogQL
queries from the parser's and the end-to-end tests, the example configs,
and Loki push bodies in each format. The Kafka request frames come from
capture_kafka.py (real clients), not from here.

Each seed is laid out the way its target reads input (fuzz/src/*.rs:
a flags or parameter prefix, then the bytes). Deterministic: running it
again rewrites the same files.

usage: fuzz/make_seeds.py
"""
import gzip, json, os, re, struct, zlib

import cramjam

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEEDS = os.path.join(HERE, "seeds")
FIXTURES = os.path.join(ROOT, "shared", "tests", "fixtures")
CORPUS = os.path.join(ROOT, "tests", "corpus", "loghub")
SECTION = b"\n--8<--\n"


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture(name):
    with open(os.path.join(FIXTURES, name), "rb") as f:
        return f.read()


def corpus_head(name, nbytes=3000):
    with open(os.path.join(CORPUS, name), "rb") as f:
        data = f.read(nbytes)
    return data[: data.rfind(b"\n") + 1]


BATCHES = ["kafka_python_none.bin", "kafka_python_gzip.bin", "kafka_python_gzip_1000.bin",
           "kafka_python_lz4_1000.bin", "kafka_python_snappy_1000.bin", "kafka_python_zstd_1000.bin"]
CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def with_base_offset(frame, base):
    return struct.pack(">q", base) + frame[8:]


def batches():
    frames = [fixture(n) for n in BATCHES]
    for name, frame in zip(BATCHES, frames):
        put("batch_frame", name, b"\x00" + frame)
        codec = CODECS[struct.unpack(">h", frame[21:23])[0] & 7]
        count = struct.unpack(">i", frame[57:61])[0]
        put("batch_" + codec, name, struct.pack(">H", count) + frame[61:])
    # Two frames in one body, as an agent sends them.
    put("batch_frame", "two_frames.bin", b"\x00" + frames[0] + frames[1])
    # A segment: the fixtures back to back with offsets that continue.
    log, offset = b"", 0
    for frame in frames:
        log += with_base_offset(frame, offset)
        offset += struct.unpack(">i", frame[23:27])[0] + 1
    put("segment_recovery", "fixtures.bin", b"\x00" + log)
    put("segment_recovery", "torn_tail.bin", b"\x00" + log[: len(log) - 100])
    put("segment_recovery", "two_segments.bin", b"\x11" + log[:261 + 200] + SECTION * 3 + with_base_offset(frames[1], 1))
    rp = json.dumps({"offset": 1, "segment": 0, "position": 200}).encode()
    put("segment_recovery", "recovery_point.bin", b"\x00" + log + SECTION * 4 + rp)
    # Records for the round trip: timestamp, key/value/header counts, bytes.
    rec = b""
    for i, line in enumerate(corpus_head("Apache.log", 400).split(b"\n")[:4]):
        line = line[: 4 * (len(line) // 4)]
        rec += struct.pack(">q", 1_700_000_000_000 + i) + bytes([3, len(line) // 4, 2]) + b"key"
        rec += line + bytes([6, 4]) + b"source" + b"web1" + bytes([4, 0xFF]) + b"path"
    put("batch_roundtrip", "apache.bin", rec)
    put("batch_roundtrip", "extremes.bin", struct.pack(">q", -(1 << 63)) + bytes([0xFF, 0xFF, 0]) +
        struct.pack(">q", (1 << 63) - 1) + bytes([0, 1, 0]) + b"\x00\x00\x00\x00")


def pb_varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def pb_field(tag, wire, payload):
    key = pb_varint((tag << 3) | wire)
    if wire == 2:
        return key + pb_varint(len(payload)) + payload
    return key + pb_varint(payload)


def loki_proto(streams):
    """logproto.PushRequest, hand-encoded: labels string, entries with a
    timestamp, a line and structured metadata."""
    body = b""
    for labels, entries in streams:
        s = pb_field(1, 2, labels.encode())
        for ns, line, meta in entries:
            ts = pb_field(1, 0, ns // 10**9) + pb_field(2, 0, ns % 10**9)
            e = pb_field(1, 2, ts) + pb_field(2, 2, line)
            for k, v in meta.items():
                e += pb_field(3, 2, pb_field(1, 2, k.encode()) + pb_field(2, 2, v.encode()))
            s += pb_field(2, 2, e)
        body += pb_field(1, 2, s)
    return body


def loki():
    lines = corpus_head("Linux.log", 1200).split(b"\n")[:6]
    ns0 = 1_700_000_000_123_456_789
    streams = [
        ('{app="web", env="prod"}', [(ns0 + i, l, {}) for i, l in enumerate(lines[:3])]),
        ('{topic="audit", job="varlog", path="/var/log/a \\"b\\"\\n"}',
         [(ns0 + 10**6 * i, l, {"trace_id": "abc%d" % i}) for i, l in enumerate(lines[3:])]),
    ]
    raw = loki_proto(streams)
    put("loki_proto", "two_streams.bin", cramjam.snappy.compress_raw(raw).read())
    put("loki_proto", "empty.bin", cramjam.snappy.compress_raw(b"").read())
    body = json.dumps({"streams": [
        {"stream": {"app": "web", "env": "prod"},
         "values": [[str(ns0 + i), l.decode(), {"trace_id": "t%d" % i}] for i, l in enumerate(lines[:3])]},
        {"stream": {"topic": "audit"}, "values": [[str(ns0), lines[3].decode()]]},
    ]}).encode()
    put("loki_json", "two_streams.json", body)
    put("loki_gzip", "json.bin", b"\x00" + gzip.compress(body, mtime=0))
    put("loki_gzip", "proto.bin", b"\x01" + gzip.compress(cramjam.snappy.compress_raw(raw).read(), mtime=0))


RUST_STR = re.compile(r'r#"(.*?)"#|"((?:[^"\\\n]|\\.)*)"', re.S)


def queries():
    files = ["collector/src/query/logql/parser/tests.rs",
             "collector/src/query/logql/parser/tests/loki_parity.rs",
             "collector/src/query/logql/parser/tests/errors.rs",
             "collector/src/query/logql/eval/tests.rs",
             "tests/tests/logql_corpus.rs", "tests/tests/logql_parity.rs", "tests/tests/loki_api.rs"]
    found = []
    for name in files:
        with open(os.path.join(ROOT, name)) as f:
            text = f.read()
        for raw, quoted in RUST_STR.findall(text):
            q = raw if raw else quoted.replace('\\"', '"').replace("\\\\", "\\")
            # Queries: a selector, a bare topic before a filter, or a function call.
            if ("{" in q and "}" in q) or "|=" in q or "_over_time" in q or q.startswith(("sum", "rate", "count")):
                if len(q) < 400 and q not in found:
                    found.append(q)
    for i, q in enumerate(found):
        data = q.encode()
        put("logql_lex", "q%03d" % i, data)
        put("logql_parse", "q%03d" % i, bytes([i % 4]) + data)
        put("logql_eval", "q%03d" % i, bytes([10, 100, 5 + i % 20, 40]) + data)
    return len(found)


def configs():
    for target, names in [("agent_config", ["configs/agent.toml", "configs/quickstart/agent.toml",
                                            "packaging/config/agent.toml"]),
                          ("collector_config", ["configs/collector.toml", "configs/quickstart/collector.toml",
                                                "packaging/config/collector.toml"])]:
        for name in names:
            path = os.path.join(ROOT, name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    put(target, name.replace("/", "_"), f.read())


def agent():
    java = (b"2024-01-02 03:04:05 ERROR request failed\njava.lang.IllegalStateException: boom\n"
            b"\tat com.example.Foo.bar(Foo.java:12)\n\tat com.example.Main.main(Main.java:3)\n"
            b"Caused by: java.io.IOException: eof\n\t... 2 more\n2024-01-02 03:04:06 INFO done\n")
    jsonl = b'{"ts":"2024-01-02T03:04:05Z","level":"info","msg":"ok"}\n{"ts":1704164645,"level":"warn"}\n'
    logfmt = b'ts="2024-01-02 03:04:05" level=error msg="a \\"quoted\\" word" status=500\nbare key=v\n'
    crlf = b"one\r\ntwo\r\n\r\nlast without newline\r"
    for name in ["Apache.log", "HDFS.log", "OpenSSH.log", "Android.log"]:
        head = corpus_head(name, 1500)
        put("agent_framing", name, bytes([200, 0, 3, 7, 64, 1]) + head)
        put("agent_pipeline", name, bytes([0, 5, 60, 2]) + head)
    put("agent_framing", "crlf_long.bin", bytes([4, 1, 2, 1, 3]) + crlf)
    put("agent_pipeline", "java.bin", bytes([0, 31, 255, 0]) + java)
    put("agent_pipeline", "java_continuation.bin", bytes([0x42, 31, 255, 3]) + java)
    put("agent_pipeline", "json.bin", bytes([1, 0, 255, 1]) + jsonl)
    put("agent_pipeline", "logfmt.bin", bytes([5, 0, 255, 14]) + logfmt)
    entry = {"key": {"dev": 2049, "ino": 131}, "source": "app", "head": {"len": 256, "crc": 1234567},
             "path": "/var/log/app.log", "pos": 4096, "producer_id": 77, "next_seq": 12, "generation": 1,
             "continues": {"original": 70, "checkpoint_seq": 5}, "tail": {"len": 64, "crc": 99},
             "born_ms": 1704164645000}
    doc = {"version": 1, "saved_ms": 1704164645123, "files": [entry, dict(entry, key={"dev": 2049, "ino": 132},
                                                                        continues=None, tail={"len": 0, "crc": 0})]}
    put("agent_checkpoint", "two_files.json", json.dumps(doc, indent=1).encode())
    put("agent_checkpoint", "empty.json", b'{"version":1,"files":[]}')


def main():
    batches()
    loki()
    n = queries()
    configs()
    agent()
    print(f"seeds written under {SEEDS} ({n} LogQL queries)")


if __name__ == "__main__":
    main()
