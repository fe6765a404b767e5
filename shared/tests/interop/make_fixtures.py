#!/usr/bin/env python3
"""Writes RecordBatch v2 fixtures built by kafka-python, an independent
implementation, for logpost's decoder tests (shared/tests/interop.rs).

Each fixture is NAME.bin (one batch as kafka-python's
DefaultRecordBatchBuilder produced it) and NAME.json (the records it holds:
bytes as hex, null as null). Regenerate with:

    python3 shared/tests/interop/make_fixtures.py shared/tests/fixtures
"""
import json, os, sys

from kafka.record.default_records import DefaultRecordBatchBuilder

GZIP, SNAPPY, LZ4, ZSTD = 1, 2, 3, 4


def hexify(b):
    return None if b is None else bytes(b).hex()


def build(name, codec, producer, records, outdir):
    pid, epoch, seq = producer
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=False,
        producer_id=pid, producer_epoch=epoch, base_sequence=seq, batch_size=1 << 20)
    for offset, (ts, key, value, headers) in enumerate(records):
        assert builder.append(offset, ts, key, value, headers) is not None
    data = bytes(builder.build())
    # kafka-python silently skips compression that does not pay off; a
    # fixture must hold the codec its name promises.
    assert int.from_bytes(data[21:23], "big") & 7 == codec, name
    with open(os.path.join(outdir, name + ".bin"), "wb") as f:
        f.write(data)
    expected = {
        "codec": codec,
        "producer_id": pid, "producer_epoch": epoch, "base_sequence": seq,
        "records": [
            {"timestamp_ms": ts, "key": hexify(key), "value": hexify(value),
             "headers": [[k, hexify(v)] for k, v in headers]}
            for ts, key, value, headers in records
        ],
    }
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(expected, f)
        f.write("\n")


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    lines = [
        (1700000000000, None, b"2025-01-01 12:00:00 INFO started", [("host", b"web-03"), ("source", b"app")]),
        (1700000000123, b"key-1", b"line with \xff invalid utf-8 \x00 and NUL", []),
        (1699999999000, None, b"", [("empty", b""), ("null", None)]),
        (1700000005000, b"", None, []),
    ]
    build("kafka_python_none", 0, (-1, -1, -1), lines, outdir)
    # Repeated so that gzip pays off and kafka-python keeps the codec.
    build("kafka_python_gzip", GZIP, (-1, -1, -1), lines * 4, outdir)
    many = [(1700000000000 + i, None, ("line %06d " % i).encode() + b"x" * (i % 97), [("n", str(i).encode())])
            for i in range(1000)]
    build("kafka_python_gzip_1000", GZIP, (4242, 7, 123456), many, outdir)
    # Kafka's other codecs (kafka-python needs python-snappy, lz4 and
    # zstandard): snappy in xerial's framing, as Java clients write it.
    build("kafka_python_snappy_1000", SNAPPY, (4242, 7, 0), many, outdir)
    build("kafka_python_lz4_1000", LZ4, (4242, 7, 1000), many, outdir)
    build("kafka_python_zstd_1000", ZSTD, (4242, 7, 2000), many, outdir)


if __name__ == "__main__":
    main()
