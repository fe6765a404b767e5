#!/usr/bin/env python3
"""Decodes batches written by logpost with kafka-python (an independent
implementation) and prints them as JSON, for shared/tests/interop.rs.

usage: decode_ours.py FILE   (FILE holds one or more concatenated batches)
"""
import json, sys

from kafka.record.memory_records import MemoryRecords


def hexify(b):
    return None if b is None else bytes(b).hex()


def main():
    data = open(sys.argv[1], "rb").read()
    records = MemoryRecords(data)
    batches = []
    while records.has_next():
        batch = records.next_batch()
        batches.append({
            "base_offset": batch.base_offset,
            "codec": batch.compression_type,
            "producer_id": batch.producer_id,
            "producer_epoch": batch.producer_epoch,
            "base_sequence": batch.base_sequence,
            "crc_valid": batch.validate_crc(),
            "records": [
                {"offset": r.offset, "timestamp_ms": r.timestamp, "key": hexify(r.key),
                 "value": hexify(r.value), "headers": [[k, hexify(v)] for k, v in r.headers]}
                for r in batch
            ],
        })
    json.dump(batches, sys.stdout)


if __name__ == "__main__":
    main()
