"""An idempotent confluent-kafka producer (acks=all) that produces
values m-0, m-1, ... to TOPIC, message i to partition i % PARTITIONS, at
about RATE messages/s until SIGTERM; then it flushes and exits. It prints,
flushed, one line per event:

  DELIVERED partition offset value   a delivery report without error
  FAILED value error                 a delivery report with an error
  DONE produced                      after the final flush

Messages never time out (message.timeout.ms is 10 minutes), so through
broker failovers every message must end DELIVERED, exactly once.
usage: produce_steadily.py BOOTSTRAP TOPIC PARTITIONS RATE
"""
import signal
import sys
import time

from confluent_kafka import Producer


def say(*parts):
    print(*parts, flush=True)


def main():
    bootstrap, topic, partitions, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

    def report(err, msg):
        if err is not None:
            say("FAILED", msg.value().decode(), str(err).replace("\n", " "))
        else:
            say("DELIVERED", msg.partition(), msg.offset(), msg.value().decode())

    p = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 600000,
        "retry.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
        "topic.metadata.refresh.interval.ms": 1000,
    })
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    i, start = 0, time.monotonic()
    while not stop:
        while i < (time.monotonic() - start) * rate:
            p.produce(topic, value=f"m-{i}".encode(), partition=i % partitions, on_delivery=report)
            i += 1
        p.poll(0.02)
    left = p.flush(300)
    say("DONE", i)
    sys.exit(1 if left else 0)


if __name__ == "__main__":
    main()
