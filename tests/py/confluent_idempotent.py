"""confluent-kafka (librdkafka): idempotent producer sends N messages, then a
group consumer reads them all back. Exits non-zero with a reason on failure.

usage: confluent_idempotent.py BOOTSTRAP TOPIC N
"""
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer


def main():
    bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    errors, delivered = [], []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append((msg.partition(), msg.offset(), msg.value().decode()))

    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "batch.num.messages": 50,
    })
    for i in range(n):
        p.produce(topic, key=f"k{i % 7}".encode(), value=f"idem-{i}".encode(), on_delivery=on_delivery)
        p.poll(0)
    remaining = p.flush(60)
    if remaining or errors:
        sys.exit(f"producer: {remaining} undelivered, errors: {errors[:5]}")
    offsets = sorted((part, off) for part, off, _ in delivered)
    if len(set(offsets)) != n:
        sys.exit(f"producer: duplicate offsets in delivery reports: {len(set(offsets))} distinct of {n}")

    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"idem-{uuid.uuid4()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    c.subscribe([topic])
    seen = {}
    deadline = time.time() + 60
    while len(seen) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            sys.exit(f"consumer error: {m.error()}")
        seen[m.value().decode()] = (m.partition(), m.offset())
    c.commit(asynchronous=False)
    c.close()
    expected = {f"idem-{i}" for i in range(n)}
    if set(seen) != expected:
        sys.exit(f"consumer: got {len(seen)} of {n}; missing e.g. {sorted(expected - set(seen))[:5]}")
    by_value = {v: (part, off) for part, off, v in delivered}
    if by_value != seen:
        sys.exit("consumer: offsets differ from the producer's delivery reports")
    print(f"OK {n}")


if __name__ == "__main__":
    main()
