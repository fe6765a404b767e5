"""kafka-python: (idempotent) producer sends N messages, a group consumer
reads them back, commits, and the committed offsets are checked.

usage: kafka_python_roundtrip.py BOOTSTRAP TOPIC N
"""
import sys
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition


def main():
    bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    futures = [p.send(topic, key=f"k{i % 5}".encode(), value=f"kp-{i}".encode()) for i in range(n)]
    p.flush(60)
    metas = [f.get(timeout=30) for f in futures]
    p.close()
    if len({(m.partition, m.offset) for m in metas}) != n:
        sys.exit("producer: offsets not distinct")

    group = f"kp-{uuid.uuid4()}"
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=10000, heartbeat_interval_ms=1000)
    seen = {}
    deadline = time.time() + 60
    while len(seen) < n and time.time() < deadline:
        for tp, records in c.poll(timeout_ms=500).items():
            for r in records:
                seen[r.value.decode()] = (r.partition, r.offset)
    c.commit()
    partitions = c.assignment()
    committed = {tp.partition: c.committed(tp) for tp in partitions}
    ends = c.end_offsets(list(partitions))
    c.close()
    expected = {f"kp-{i}" for i in range(n)}
    if set(seen) != expected:
        sys.exit(f"consumer: got {len(seen)} of {n}")
    for tp in partitions:
        if committed[tp.partition] != ends[tp]:
            sys.exit(f"committed {committed[tp.partition]} != end offset {ends[tp]} for {tp}")
    # A fresh consumer in the same group resumes from the commit: nothing left to read.
    c2 = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                       enable_auto_commit=False, session_timeout_ms=10000, heartbeat_interval_ms=1000)
    extra = []
    t_end = time.time() + 8
    while time.time() < t_end and not c2.assignment():
        extra += [r for rs in c2.poll(timeout_ms=500).values() for r in rs]
    for _ in range(4):
        extra += [r for rs in c2.poll(timeout_ms=500).values() for r in rs]
    positions = {tp.partition: c2.position(tp) for tp in c2.assignment()}
    c2.close()
    if extra:
        sys.exit(f"resumed consumer re-read {len(extra)} committed records")
    if not positions or any(positions[p] != ends[TopicPartition(topic, p)] for p in positions):
        sys.exit(f"resumed positions {positions} != ends")
    print(f"OK {n}")


if __name__ == "__main__":
    main()
