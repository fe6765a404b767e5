"""A consumer-group member that reports what it does on stdout, one line
per event, flushed:

  ASSIGNED p,p,...      after each rebalance (partitions of TOPIC)
  MSG p offset value    a record, printed *before* its offset is committed
  COMMITTED p offset    after the synchronous commit of offset+1 returned

It commits every record synchronously, so anything committed was printed.
usage: group_member.py confluent|kafka-python BOOTSTRAP TOPIC GROUP
"""
import signal
import sys


def say(*parts):
    print(*parts, flush=True)


def run_confluent(bootstrap, topic, group):
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
        "partition.assignment.strategy": "range",
    })

    def on_assign(consumer, partitions):
        say("ASSIGNED", ",".join(str(p.partition) for p in sorted(partitions, key=lambda p: p.partition)))

    c.subscribe([topic], on_assign=on_assign)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        say("MSG", m.partition(), m.offset(), m.value().decode())
        c.commit(offsets=[TopicPartition(topic, m.partition(), m.offset() + 1)], asynchronous=False)
        say("COMMITTED", m.partition(), m.offset() + 1)
    c.close()


def run_kafka_python(bootstrap, topic, group):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.structs import OffsetAndMetadata

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            pass

        def on_partitions_assigned(self, assigned):
            say("ASSIGNED", ",".join(str(tp.partition) for tp in sorted(assigned, key=lambda tp: tp.partition)))

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                      enable_auto_commit=False, session_timeout_ms=6000, heartbeat_interval_ms=1000)
    c.subscribe([topic], listener=Listener())
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    while not stop:
        for tp, records in c.poll(timeout_ms=200).items():
            for r in records:
                say("MSG", r.partition, r.offset, r.value.decode())
                c.commit({TopicPartition(topic, r.partition): OffsetAndMetadata(r.offset + 1, "", -1)})
                say("COMMITTED", r.partition, r.offset + 1)
    c.close()


if __name__ == "__main__":
    lib, bootstrap, topic, group = sys.argv[1:5]
    {"confluent": run_confluent, "kafka-python": run_kafka_python}[lib](bootstrap, topic, group)
