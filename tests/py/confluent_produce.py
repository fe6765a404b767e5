"""confluent-kafka (librdkafka) idempotent producer: sends values
VALUE_PREFIX-0..N-1 to TOPIC with acks=all and enable.idempotence=true,
and prints one line per delivery report, then OK.

  DELIVERED partition offset value

usage: confluent_produce.py BOOTSTRAP TOPIC N VALUE_PREFIX [COMPRESSION]

COMPRESSION is librdkafka's compression.type (none, gzip, snappy, lz4,
zstd); default none.
"""
import sys

from confluent_kafka import Producer


def main():
    bootstrap, topic, n, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    compression = sys.argv[5] if len(sys.argv) > 5 else "none"
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            print("DELIVERED", msg.partition(), msg.offset(), msg.value().decode(), flush=True)

    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.num.messages": 100,
        "message.timeout.ms": 60000,
        "compression.type": compression,
    })
    for i in range(n):
        p.produce(topic, key=f"k{i % 7}".encode(), value=f"{prefix}-{i}".encode(), on_delivery=on_delivery)
        p.poll(0)
    left = p.flush(90)
    if left or errors:
        sys.exit(f"producer: {left} undelivered, errors: {errors[:5]}")
    print("OK", n, flush=True)


if __name__ == "__main__":
    main()
