#!/usr/bin/env python3
"""Records the Kafka request frames real clients send, as seeds for the
kafka_* fuzz targets (fuzz/seeds/kafka_<api>/).

Starts a collector with a Kafka listener whose advertised address is a
recording proxy in front of it, then drives kafka-python and
confluent-kafka (librdkafka) through the proxy: metadata, idempotent and
compressed produce, a consumer group that joins, syncs, fetches, commits,
fetches its offsets, heartbeats and leaves. Every client->server frame
(size prefix included) is saved under the API it belongs to, up to
PER_VERSION frames per API version and client.

usage: fuzz/capture_kafka.py PATH/TO/logpost-collector
"""
import os, socket, struct, subprocess, sys, tempfile, threading, time, uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
PER_VERSION = 3
API_NAMES = {0: "produce", 1: "fetch", 2: "list_offsets", 3: "metadata", 8: "offset_commit",
             9: "offset_fetch", 10: "find_coordinator", 11: "join_group", 12: "heartbeat",
             13: "leave_group", 14: "sync_group", 18: "api_versions", 22: "init_producer_id"}

frames = []  # (client, api_key, version, bytes)
lock = threading.Lock()
current_client = ["none"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pump(src, dst, record):
    buf = b""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            if record:
                buf += data
                while len(buf) >= 4:
                    (n,) = struct.unpack(">i", buf[:4])
                    if len(buf) < 4 + n:
                        break
                    frame, buf = buf[:4 + n], buf[4 + n:]
                    key, ver = struct.unpack(">hh", frame[4:8])
                    with lock:
                        frames.append((current_client[0], key, ver, frame))
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy(listen_port, target_port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen(64)
    while True:
        client, _ = srv.accept()
        upstream = socket.create_connection(("127.0.0.1", target_port))
        threading.Thread(target=pump, args=(client, upstream, True), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, False), daemon=True).start()


def kafka_python(bootstrap, topic):
    from kafka import KafkaConsumer, KafkaProducer
    for codec in ("gzip", None):
        p = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=5)
        for i in range(5):
            p.send(topic, key=b"k%d" % i, value=b"kafka-python line %d" % i, headers=[("h", b"v")])
        p.flush(30)
        p.close()
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="kp-" + uuid.uuid4().hex[:8],
                      auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000,
                      heartbeat_interval_ms=200)
    got = sum(1 for _ in c)
    c.commit()
    c.committed  # noqa: B018
    c.close()
    return got


def confluent(bootstrap, topic):
    from confluent_kafka import Consumer, Producer, TopicPartition
    for codec in ("lz4", "zstd", "snappy"):
        p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                      "linger.ms": 5, "compression.codec": codec})
        for i in range(5):
            p.produce(topic, key=b"k%d" % i, value=b"librdkafka %s line %d" % (codec.encode(), i))
        p.flush(30)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "rd-" + uuid.uuid4().hex[:8],
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "heartbeat.interval.ms": 200, "session.timeout.ms": 6000})
    c.subscribe([topic])
    got, deadline = 0, time.time() + 20
    while got < 15 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.commit(asynchronous=False)
    c.committed([TopicPartition(topic, 0)], timeout=10)
    c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.offsets_for_times([TopicPartition(topic, 0, 0)], timeout=10)
    time.sleep(1)  # a heartbeat or two while the member is in the group
    c.close()
    return got


def main():
    collector = sys.argv[1]
    work = tempfile.mkdtemp(prefix="fuzz-capture-")
    kport, pport, hport = free_port(), free_port(), free_port()
    cfg = os.path.join(work, "collector.toml")
    with open(cfg, "w") as f:
        f.write(f'data_dir = "{work}/data"\n[http]\nlisten = "127.0.0.1:{hport}"\n'
                f'[kafka]\nlisten = "127.0.0.1:{kport}"\nadvertised = "127.0.0.1:{pport}"\n')
    proc = subprocess.Popen([collector, "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", kport), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        threading.Thread(target=proxy, args=(pport, kport), daemon=True).start()
        bootstrap = f"127.0.0.1:{pport}"
        current_client[0] = "kafka-python"
        n1 = kafka_python(bootstrap, "fuzz-kp")
        current_client[0] = "librdkafka"
        n2 = confluent(bootstrap, "fuzz-rd")
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(10)
    kept = {}
    for client, key, ver, frame in frames:
        name = API_NAMES.get(key)
        if name is None:
            continue
        n = kept.get((name, client, ver), 0)
        if n >= PER_VERSION:
            continue
        kept[(name, client, ver)] = n + 1
        d = os.path.join(SEEDS, "kafka_" + name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{client}-v{ver}-{n}.bin"), "wb") as f:
            f.write(frame)
    apis = sorted({k[0] for k in kept})
    print(f"consumed {n1} (kafka-python) and {n2} (librdkafka); {len(frames)} frames; "
          f"kept {sum(kept.values())} for {len(apis)} APIs: {', '.join(apis)}")


if __name__ == "__main__":
    main()
