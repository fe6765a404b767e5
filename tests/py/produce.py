"""Produces values m-START..m-(START+COUNT-1) to TOPIC, message i to
partition i % PARTITIONS, with confluent-kafka. usage: produce.py BOOTSTRAP TOPIC START COUNT PARTITIONS"""
import sys

from confluent_kafka import Producer

bootstrap, topic, start, count, parts = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
errors = []
p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
for i in range(start, start + count):
    p.produce(topic, value=f"m-{i}".encode(), partition=i % parts,
              on_delivery=lambda err, msg: err and errors.append(str(err)))
left = p.flush(60)
if left or errors:
    sys.exit(f"undelivered {left}, errors {errors[:3]}")
print("PRODUCED", count, flush=True)
