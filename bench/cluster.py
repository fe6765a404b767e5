#!/usr/bin/env python3
"""Cluster benchmarks of issue 29: failover time and replicated ingest (figures only).

Starts its own single-member etcd (free ports, its own data directory, as
tests/src/etcd.rs does) and three collectors with `[cluster]` sections
(replication factor 3, min_insync_replicas 2, session_timeout 2s, fsync
always: the defaults), plus, for the second figure, one collector without
`[cluster]`. Everything runs on 127.0.0.1 in a directory under bench/out/.

1. Failover time. Three single-partition topics with replication factor 3,
   chosen so that their preferred leaders are nodes 1, 2 and 3; round r
   uses topic r mod 3, so the SIGKILLs rotate over the nodes. One client
   thread writes small batches (10 records) to the topic's leader every
   --write-interval, following 421 answers and, after a failed write, the
   cluster map (`GET /v1/cluster` of any node it can reach, as an agent
   does). Each round: wait until every topic has its preferred leader and
   three in-sync replicas and the writer has been acknowledged by the
   leader; SIGKILL the leader; measure
     election: SIGKILL until a survivor's /v1/cluster names a new leader
               (polled every 10 ms);
     failover: SIGKILL until the first acknowledged (2xx) write by another
               node;
   then restart the killed node on its address and wait until it is in
   sync again (3 in the ISR; the controller then hands the preferred
   leadership back).

2. Replicated ingest. The same RecordBatch v2 bodies (kafka-python's
   builder, --batch-kib of raw lines each, gzip level 1 like the agent's
   default, built before timing) from the first --mib MiB of
   ../shared/bench/make-bigfile.py's file, posted --passes times over by
   --threads client threads to `/v1/ingest/{topic}?partition=N`, round
   robin over --partitions (3): to a single-node collector (no [cluster]),
   and to the cluster (replication factor 3, acks=all, as HTTP ingest
   always is; with 3 partitions, each led by another node), each
   partition's batches to its leader. A fresh topic per run, deleted
   after it; runs alternated (single, cluster, single, ...) --rounds
   times. MiB/s counts raw line bytes, wall time from the first post to
   the last answer; CPU seconds per GiB are the collectors' (summed over
   the nodes) and this script's own (the clients).

Prints a table per figure and a one-line summary. Every wait has a
deadline and says, when it runs out, which node it waited for and what it
answered. Children (etcd, collectors) are killed on exit, Ctrl-C and
errors; --keep keeps the directory (it is kept after a failure too).

usage: bench/cluster.py [--failovers N] [--mib N] [--passes N] [--threads N] [--rounds N]
                        [--only failover|ingest] [--fsync always|interval] [--keep]
       (build first: cargo build --release; etcd: Debian's etcd-server, or $LOGPOST_ETCD)
"""
import argparse, concurrent.futures, json, math, os, re, shutil, signal, socket, statistics, string, subprocess, sys, tempfile, \
    threading, time
import urllib.error, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# LOGPOST_BIN: another build's binaries, for before/after runs.
BIN = os.environ.get("LOGPOST_BIN", os.path.join(ROOT, "target", "release"))
ETCD = os.environ.get("LOGPOST_ETCD") or shutil.which("etcd") or "/usr/bin/etcd"
sys.path.insert(0, HERE)
from pipeline import bigfile, cpu_seconds  # noqa: E402

import kafka.record.default_records as default_records  # noqa: E402
from kafka.codec import gzip_encode  # noqa: E402
from kafka.record.default_records import DefaultRecordBatchBuilder  # noqa: E402

# kafka-python gzips at level 9; the agent's default is level 1.
default_records.gzip_encode = lambda data: gzip_encode(data, 1)

CT = "application/vnd.kafka.record-batch.v2"
MiB = 1 << 20
CODECS = {"none": 0, "gzip": 1, "lz4": 3}
# Generous: the machine is shared and noisy; these bound a hang, not a figure.
START_DEADLINE = 60.0
FAILOVER_DEADLINE = 30.0
SETTLE_DEADLINE = 120.0


class BenchError(Exception):
    """A wait ran out or a node answered what it must not; says which and what."""


# ---------------------------------------------------------------- processes

class Children:
    """Every process this script started, killed on the way out."""

    def __init__(self):
        self.procs = []
        self.lock = threading.Lock()

    def add(self, p):
        with self.lock:
            self.procs.append(p)
        return p

    def kill_all(self):
        with self.lock:
            procs, self.procs = self.procs, []
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass


CHILDREN = Children()


def on_sigterm(signum, _frame):
    # Unwinds through the finally blocks, which kill the children.
    raise SystemExit(128 + signum)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TAKEN = set()


def stable_port():
    """A free port below the kernel's ephemeral range, as the e2e harness
    picks (tests/src/process.rs): a killed node restarts on its address,
    and no outgoing connection can take the port meanwhile. Never one
    handed out before (a node not started yet does not hold its port)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    base = low - 9000
    start = os.getpid() % 8000
    for i in range(8000):
        port = base + (start + i * 7919) % 8000
        if port in TAKEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            TAKEN.add(port)
            return port
    raise BenchError(f"no free port between {base} and {base + 8000}")


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            lines = f.readlines()
    except OSError as e:
        return f"({path}: {e})"
    return "".join(lines[-n:]).rstrip() or "(empty)"


def wait_for(what, deadline, probe, interval=0.05):
    """Calls probe() until it returns (value, _) with value not None; on the
    deadline raises with probe's last description of what it saw."""
    end = time.monotonic() + deadline
    seen = "nothing answered yet"
    while True:
        value, seen = probe()
        if value is not None:
            return value
        if time.monotonic() > end:
            raise BenchError(f"{what}: not within {deadline:.0f} s; last seen: {seen}")
        time.sleep(interval)


class Etcd:
    def __init__(self, work):
        self.dir = os.path.join(work, "etcd")
        os.makedirs(self.dir)
        client, peer = free_port(), free_port()
        self.url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        self.stderr = os.path.join(self.dir, "stderr")
        self.proc = CHILDREN.add(subprocess.Popen(
            [ETCD, "--name", "bench", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
             "--initial-cluster", f"bench={peer_url}", "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(self.stderr, "w")))

        def healthy():
            if self.proc.poll() is not None:
                raise BenchError(f"etcd ({ETCD}) exited at start with {self.proc.returncode}:\n{tail(self.stderr)}")
            try:
                with OPENER.open(f"{self.url}/health", timeout=2) as r:
                    body = r.read().decode(errors="replace")
            except (OSError, urllib.error.URLError) as e:
                return None, f"etcd at {self.url}: {e}"
            ok = json.loads(body).get("health") == "true" if body.startswith("{") else False
            return (True if ok else None), f"etcd at {self.url}: {body.strip()}"

        wait_for("etcd to answer its health check", START_DEADLINE, healthy)


class Collector:
    """One collector process: its directory, config and fixed address."""

    def __init__(self, work, name, extra_toml):
        self.name = name
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "collector.toml")
        with open(self.config, "w") as f:
            f.write(f'data_dir = "{self.dir}/data"\n{extra_toml}')
        self.stdout = os.path.join(self.dir, "stdout")
        self.stderr = os.path.join(self.dir, "stderr")
        self.port = stable_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.started = False

    def start(self):
        """Starts it on its address and waits until it listens; retries while
        the port is still held (a killed process's socket may linger)."""
        end = time.monotonic() + START_DEADLINE
        while True:
            with open(self.stderr, "a") as err:
                err.write(f"--- started {time.strftime('%H:%M:%S')}\n")
            self.proc = CHILDREN.add(subprocess.Popen(
                [os.path.join(BIN, "logpost-collector"), "--config", self.config,
                 "--listen", f"127.0.0.1:{self.port}"],
                stdout=open(self.stdout, "w"), stderr=open(self.stderr, "a")))
            while True:
                with open(self.stdout) as f:
                    if any(l.startswith("logpost-collector listening on ") for l in f):
                        self.started = True
                        return
                if self.proc.poll() is not None:
                    break
                if time.monotonic() > end:
                    raise BenchError(f"{self.name} did not announce its address within {START_DEADLINE:.0f} s:\n"
                                     f"{tail(self.stderr)}")
                time.sleep(0.02)
            if time.monotonic() > end or "Address already in use" not in tail(self.stderr, 5):
                raise BenchError(f"{self.name} exited at start with {self.proc.returncode}:\n{tail(self.stderr)}")
            if not self.started:
                # Someone took the probed port first; a restart must keep its own.
                self.port = stable_port()
                self.url = f"http://127.0.0.1:{self.port}"
            time.sleep(0.2)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def logpost(self, *args):
        out = subprocess.run([os.path.join(BIN, "logpost"), "--collector", self.url, *args],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise BenchError(f"`logpost {' '.join(args)}` against {self.name} ({self.url}) failed: "
                             f"{out.stderr.strip() or out.stdout.strip()}")
        return out.stdout


# ---------------------------------------------------------------- HTTP

class Answer:
    """What a POST came back with: status (0 when the node could not be
    reached), the body's error text, and when the answer arrived."""

    def __init__(self, status, text):
        self.status, self.text, self.at = status, text, time.monotonic()

    def ok(self):
        return 200 <= self.status < 300

    def __str__(self):
        return f"{self.status or 'unreachable'}: {self.text}"


# Never through an http_proxy of the environment: every node is on 127.0.0.1.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(url, topic, body, partition=None, timeout=60):
    q = f"?partition={partition}" if partition is not None else ""
    req = urllib.request.Request(f"{url}/v1/ingest/{topic}{q}", data=body, method="POST",
                                 headers={"Content-Type": CT})
    try:
        with OPENER.open(req, timeout=timeout) as r:
            r.read()
            return Answer(r.status, "")
    except urllib.error.HTTPError as e:
        text = e.read().decode(errors="replace")
        try:
            text = json.loads(text).get("error", text)
        except ValueError:
            pass
        return Answer(e.code, text.strip())
    except (OSError, urllib.error.URLError) as e:
        return Answer(0, str(getattr(e, "reason", e)))


def get_json(url, timeout=2):
    with OPENER.open(url, timeout=timeout) as r:
        return json.load(r)


def cluster_view(url):
    """`GET /v1/cluster` of one node: (view, None) or (None, what went wrong)."""
    try:
        return get_json(f"{url}/v1/cluster"), None
    except urllib.error.HTTPError as e:
        return None, f"{url}: {e.code} {e.read().decode(errors='replace').strip()}"
    except (OSError, urllib.error.URLError, ValueError) as e:
        return None, f"{url}: {getattr(e, 'reason', e)}"


def partition_state(view, topic, partition):
    for t in view.get("topics", []):
        if t["name"] == topic:
            for p in t["partitions"]:
                if p["partition"] == partition:
                    return p
    return None


def node_urls(view):
    return {n["id"]: n["url"] for n in view.get("nodes", [])}


def describe(p):
    return f"leader {p['leader']} epoch {p['leader_epoch']} replicas {p['replicas']} isr {p['isr']}"


def batch(values, ts, codec=0):
    b = DefaultRecordBatchBuilder(magic=2, compression_type=codec, is_transactional=False,
                                  producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    for i, v in enumerate(values):
        b.append(i, timestamp=ts, key=None, value=v, headers=[])
    return bytes(b.build())


def pct(xs, q):
    """Nearest-rank percentile: p99 of fewer than 100 values is the largest."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs), max(1, math.ceil(q / 100 * len(xs)))) - 1]


# ---------------------------------------------------------------- the cluster

class Cluster:
    def __init__(self, work, etcd, storage):
        self.nodes = {}
        for id in (1, 2, 3):
            self.nodes[id] = Collector(work, f"node{id}", storage + (
                f'[cluster]\nnode_id = {id}\netcd = ["{etcd.url}"]\nreplication_factor = 3\n'
                'min_insync_replicas = 2\nsession_timeout = "2s"\nreplica_lag_time_max = "10s"\n'))
        for n in self.nodes.values():
            n.start()
        for id, n in self.nodes.items():
            def formed(n=n):
                v, err = cluster_view(n.url)
                if v is None:
                    return None, err
                ok = len(v.get("nodes", [])) == 3 and v.get("controller") is not None
                return (True if ok else None), f"nodes {sorted(node_urls(v))}, controller {v.get('controller')}"
            wait_for(f"node {id} ({n.url}) to see three nodes and a controller", START_DEADLINE, formed)

    def any_view(self):
        """The first view a node gives (a dead one refuses at once); (view, errors)."""
        errors = []
        for id, n in self.nodes.items():
            v, err = cluster_view(n.url)
            if v is not None:
                return v, errors
            errors.append(f"node {id} {err}")
        return None, errors

    def create(self, topic, partitions):
        self.nodes[1].logpost("topics", "create", topic, "--partitions", str(partitions), "--replication-factor", "3")
        return self.wait_in_sync([topic], partitions)[topic]

    def wait_in_sync(self, topics, partitions=1, preferred=False, interval=0.1):
        """Waits until every partition of `topics` has a leader (its preferred
        one, with `preferred`) and three in-sync replicas, as a node's copy
        of etcd's state shows it; returns {topic: [partition states]}."""
        def probe():
            v, errors = self.any_view()
            if v is None:
                return None, "; ".join(errors)
            out, seen = {}, []
            for t in topics:
                states = []
                for p in range(partitions):
                    s = partition_state(v, t, p)
                    if s is None:
                        return None, f"node {v['node_id']} does not list {t}/{p}"
                    states.append(s)
                    seen.append(f"{t}/{p}: {describe(s)}")
                out[t] = states
            ok = all(s["leader"] >= 0 and len(s["isr"]) == 3 and (not preferred or s["leader"] == s["replicas"][0])
                     for ss in out.values() for s in ss)
            if not ok:
                return None, f"node {v['node_id']} says " + "; ".join(seen)
            return out, ""
        what = "every partition of " + ", ".join(topics) + (" led by its preferred replica" if preferred else "") \
            + " with three in-sync replicas"
        return wait_for(what, SETTLE_DEADLINE, probe, interval=interval)


# ---------------------------------------------------------------- failover

class Writer(threading.Thread):
    """Writes small batches to the leader of partition 0 of `self.topic`,
    one at a time, until stopped. Follows a 421's named leader at once;
    after any other failure asks the cluster map of whichever node answers
    (every node's URL is its bootstrap list, as an agent's `urls`) and
    waits 20 ms before trying again."""

    def __init__(self, cluster, topic, interval):
        super().__init__(daemon=True)
        self.cluster, self.topic, self.interval = cluster, topic, interval
        self.urls = {id: n.url for id, n in cluster.nodes.items()}
        self.lock = threading.Lock()
        self.acks = []      # (monotonic time, node id, topic)
        self.failures = []  # (monotonic time, node id, topic, answer)
        self.records = 0
        self.stop = threading.Event()
        self.error = None

    def switch(self, topic):
        with self.lock:
            self.topic = topic

    def acks_since(self, t, topic, node=None, exclude=None):
        with self.lock:
            return [(at, n) for at, n, tp in self.acks
                    if at > t and tp == topic and (node is None or n == node) and (exclude is None or n != exclude)]

    def failures_since(self, t, until=float("inf")):
        with self.lock:
            return [f for f in self.failures if t < f[0] < until]

    def resolve(self, topic):
        for url in self.urls.values():
            v, _ = cluster_view(url)
            if v is None:
                continue
            s = partition_state(v, topic, 0)
            if s is not None and s["leader"] >= 0:
                return s["leader"]
        return None

    def run(self):
        seq, leader, topic = 0, None, None
        try:
            while not self.stop.is_set():
                with self.lock:
                    if topic != self.topic:
                        topic, leader = self.topic, None
                if leader is None:
                    leader = self.resolve(topic)
                    if leader is None:
                        time.sleep(0.02)
                        continue
                values = [f"failover {seq:08d}-{i} {'x' * 80}".encode() for i in range(10)]
                seq += 1
                a = post(self.urls[leader], topic, batch(values, int(time.time() * 1000)), partition=0, timeout=15)
                if a.ok():
                    with self.lock:
                        self.acks.append((a.at, leader, topic))
                        self.records += len(values)
                    time.sleep(self.interval)
                    continue
                with self.lock:
                    self.failures.append((a.at, leader, topic, f"node {leader}: {a}"))
                m = re.search(r"node (\d+) at (\S+) is", a.text) if a.status == 421 else None
                if m and int(m.group(1)) in self.urls:
                    leader = int(m.group(1))
                    continue
                leader = None
                time.sleep(0.02)
        except Exception as e:  # reported by the main thread
            self.error = e


def pick_failover_topics(cluster):
    """Three one-partition topics whose preferred leaders are nodes 1, 2, 3
    (placement hashes the name, so try names until each node has one).
    The names differ in their first letter: the placement hash, taken
    modulo 3, hardly changes with a name's last bytes (FNV-1a's prime is
    435 modulo 2^31, a multiple of 3), so failover-0, failover-1, ... all
    lead on the same one or two nodes."""
    chosen = {}
    for c in string.ascii_lowercase:
        name = f"{c}-failover"
        s = cluster.create(name, 1)[0]
        pref = s["replicas"][0]
        if pref not in chosen:
            chosen[pref] = name
        else:
            cluster.nodes[1].logpost("topics", "delete", name)
        if len(chosen) == 3:
            return [chosen[id] for id in sorted(chosen)]
    raise BenchError(f"26 topics placed their preferred leaders only on nodes {sorted(chosen)}")


def failover_rounds(cluster, rounds, interval):
    topics = pick_failover_topics(cluster)
    print(f"failover topics (preferred leaders 1, 2, 3): {', '.join(topics)}", file=sys.stderr)
    writer = Writer(cluster, topics[0], interval)
    writer.start()
    rows = []
    try:
        for r in range(rounds):
            topic = topics[r % 3]
            writer.switch(topic)
            states = cluster.wait_in_sync(topics, preferred=True)
            old = states[topic][0]
            leader, epoch = old["leader"], old["leader_epoch"]
            t0 = time.monotonic()
            wait_for(f"round {r + 1}: writes to {topic} acknowledged by its leader, node {leader}", SETTLE_DEADLINE,
                     lambda: (True if len(writer.acks_since(t0, topic, node=leader)) >= 5 else None,
                              f"{len(writer.acks_since(t0, topic))} acks since; last failures: "
                              f"{[f[3] for f in writer.failures_since(t0)[-3:]]}"
                              + (f"; the writer failed: {writer.error}" if writer.error else "")))
            view, _ = cluster.any_view()
            was_controller = view is not None and view.get("controller") == leader
            survivors = [id for id in cluster.nodes if id != leader]
            t_kill = time.monotonic()
            cluster.nodes[leader].kill9()
            elected = acked = None
            seen = "nothing yet"
            end = t_kill + FAILOVER_DEADLINE
            while elected is None or acked is None:
                if elected is None:
                    for id in survivors:
                        v, err = cluster_view(cluster.nodes[id].url)
                        if v is None:
                            seen = f"node {id} {err}"
                            continue
                        s = partition_state(v, topic, 0)
                        seen = f"node {id} says {describe(s)}" if s else f"node {id} does not list {topic}"
                        if s and s["leader"] >= 0 and s["leader"] != leader and s["leader_epoch"] > epoch:
                            elected = (time.monotonic(), s["leader"], s["leader_epoch"])
                            break
                if acked is None:
                    after = writer.acks_since(t_kill, topic, exclude=leader)
                    if after:
                        acked = after[0]
                if writer.error:
                    raise BenchError(f"the writer failed: {writer.error}")
                if time.monotonic() > end:
                    fails = [f[3] for f in writer.failures_since(t_kill)[-3:]]
                    raise BenchError(
                        f"round {r + 1}: after SIGKILL of node {leader} (leader of {topic} at epoch {epoch}), "
                        f"{'no new leader' if elected is None else f'node {elected[1]} elected but no write acknowledged'} "
                        f"within {FAILOVER_DEADLINE:.0f} s; last seen: {seen}; the writer's last failures: {fails}")
                time.sleep(0.01)
            refused = len(writer.failures_since(t_kill, acked[0]))
            t_restart = time.monotonic()
            cluster.nodes[leader].start()
            t_listen = time.monotonic()
            back = cluster.wait_in_sync([topic], interval=0.01)
            t_back = time.monotonic()
            rows.append({
                "round": r + 1, "topic": topic, "killed": leader, "controller": was_controller,
                "successor": acked[1], "epoch": f"{epoch}->{elected[2]}",
                "election": elected[0] - t_kill, "failover": acked[0] - t_kill,
                "failed_writes": refused, "listening": t_listen - t_restart, "rejoin": t_back - t_restart,
            })
            row = rows[-1]
            print(f"round {r + 1:2d}: killed node {leader}{' (controller)' if was_controller else ''}, "
                  f"node {row['successor']} leads at epoch {elected[2]}: election {row['election'] * 1000:.0f} ms, "
                  f"first ack {row['failover'] * 1000:.0f} ms; restarted, listening after "
                  f"{row['listening'] * 1000:.0f} ms, in sync after {row['rejoin'] * 1000:.0f} ms "
                  f"({describe(back[topic][0])})", file=sys.stderr)
        # Sanity, not a proof (tests/tests/cluster.rs checks exactly-once):
        # each topic's high watermark holds at least what was acknowledged.
        cluster.wait_in_sync(topics, preferred=True)
    finally:
        writer.stop.set()
        writer.join(30)
    stored = 0
    for t, [s] in cluster.wait_in_sync(topics).items():
        url = cluster.nodes[s["leader"]].url
        try:
            stored += get_json(f"{url}/v1/fetch/{t}/0?offset=0&max_bytes=1", timeout=10)["high_watermark"]
        except (OSError, urllib.error.URLError, ValueError, KeyError) as e:
            raise BenchError(f"the high watermark of {t}/0 on its leader, node {s['leader']} ({url}): "
                             f"{getattr(e, 'reason', e)}") from e
    if stored < writer.records:
        raise BenchError(f"the topics' high watermarks add up to {stored} records, fewer than the "
                         f"{writer.records} acknowledged")
    return rows, writer, stored


# ---------------------------------------------------------------- ingest

def read_lines(path, nbytes):
    with open(path, "rb") as f:
        data = f.read(nbytes)
    lines = [l.rstrip(b"\r") for l in data.split(b"\n")[:-1]]
    return lines, sum(len(l) for l in lines)


def bodies_of(lines, batch_bytes, codec):
    """RecordBatch v2 bodies of about batch_bytes of lines each, built before
    timing (kafka-python's builder is pure Python)."""
    out, cur, size = [], [], 0
    ts = int(time.time() * 1000)
    for l in lines:
        cur.append(l)
        size += len(l)
        if size >= batch_bytes:
            out.append((batch(cur, ts, codec), len(cur)))
            cur, size = [], 0
    if cur:
        out.append((batch(cur, ts, codec), len(cur)))
    return out


def ingest_run(leaders, topic, bodies, passes, threads, procs):
    """Posts every body `passes` times, request i to partition i mod 3 on
    that partition's node; returns wall seconds, per-request latencies, CPU
    seconds of each of procs, and of this script (the clients)."""
    cpu0 = [cpu_seconds(p.pid) for p in procs]
    own0 = time.process_time()
    latencies, retries = [], []

    def one(i):
        body, _ = bodies[i % len(bodies)]
        p = i % len(leaders)
        t = time.monotonic()
        while True:
            a = post(leaders[p][1], topic, body, partition=p, timeout=120)
            if a.ok():
                break
            # A leader still taking up its role (421), or too few replicas
            # in sync (503): sent again, as an agent would; the figures
            # count each body once, and the run reports how many were resent.
            if a.status not in (421, 503) or time.monotonic() - t > FAILOVER_DEADLINE:
                raise BenchError(f"{topic}/{p}: node {leaders[p][0]} ({leaders[p][1]}) answered {a}")
            retries.append(str(a))
            time.sleep(0.05)
        latencies.append(a.at - t)

    t0 = time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(threads)
    try:
        for f in [pool.submit(one, i) for i in range(len(bodies) * passes)]:
            f.result()
    finally:
        # On an error, the posts not started yet are dropped.
        pool.shutdown(cancel_futures=True)
    wall = time.monotonic() - t0
    cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0)]
    return wall, latencies, cpu, time.process_time() - own0, retries


def wait_writable(leaders, topic):
    """Waits until each partition's leader acknowledges a one-record write:
    a topic just created is listed with its leaders in etcd before each
    node has taken up its role (meanwhile the leader answers 421, naming
    itself)."""
    for p, (node, url) in enumerate(leaders):
        def probe(p=p, node=node, url=url):
            a = post(url, topic, batch([b"warm-up"], int(time.time() * 1000)), partition=p, timeout=30)
            return (True if a.ok() else None), f"node {node} ({url}) answered {a}"
        wait_for(f"{topic}/{p} to take writes on its leader", SETTLE_DEADLINE, probe)


def ingest_rounds(cluster, single, args):
    lines, raw = read_lines(bigfile(1 << 30), args.mib * MiB)
    t = time.monotonic()
    bodies = bodies_of(lines, args.batch_kib * 1024, CODECS[args.compression])
    body_bytes = sum(len(b) for b, _ in bodies)
    print(f"built {len(bodies)} bodies ({args.compression}) of {len(lines):,} lines, {raw / MiB:.0f} MiB raw, "
          f"{body_bytes / MiB:.0f} MiB on the wire, in {time.monotonic() - t:.1f} s", file=sys.stderr)
    partitions = args.partitions
    rows = []
    for r in range(args.rounds):
        for kind in ("single", "cluster"):
            topic = f"ingest-{kind}-{r}"
            if kind == "single":
                single.logpost("topics", "create", topic, "--partitions", str(partitions))
                leaders = [(0, single.url)] * partitions
                procs = [single.proc]
            else:
                states = cluster.create(topic, partitions)
                leaders = [(s["leader"], cluster.nodes[s["leader"]].url) for s in states]
                procs = [n.proc for n in cluster.nodes.values()]
            wait_writable(leaders, topic)
            wall, lat, cpu, client, retries = ingest_run(leaders, topic, bodies, args.passes, args.threads, procs)
            if retries:
                print(f"{kind} round {r + 1}: {len(retries)} posts sent again, e.g. {retries[0]}", file=sys.stderr)
            gib = args.passes * raw / (1 << 30)
            row = {"kind": kind, "round": r + 1, "mibs": args.passes * raw / MiB / wall,
                   "rps": args.passes * len(lines) / wall, "wire": args.passes * body_bytes / MiB / wall,
                   "p50": pct(lat, 50), "p99": pct(lat, 99), "cpu_gib": sum(cpu) / gib,
                   "node_cpu": [c / gib for c in cpu], "client_gib": client / gib,
                   "leaders": [l for l, _ in leaders], "wall": wall, "retries": len(retries)}
            rows.append(row)
            print(f"{kind} round {r + 1}: {row['mibs']:.1f} MiB/s, {row['rps']:,.0f} records/s, "
                  f"request p50 {row['p50'] * 1000:.0f} ms p99 {row['p99'] * 1000:.0f} ms, "
                  f"collectors {row['cpu_gib']:.2f} CPU-s/GiB ({', '.join(f'{c:.2f}' for c in row['node_cpu'])}), "
                  f"client {row['client_gib']:.2f}, {row['wall']:.1f} s"
                  + (f", leaders {row['leaders']}" if kind == "cluster" else ""), file=sys.stderr)
            # Each run on a fresh topic; the last one's data goes, so that
            # the disk and page cache do not fill round after round.
            (single if kind == "single" else cluster.nodes[1]).logpost("topics", "delete", topic)
    return rows, len(lines), raw, len(bodies), body_bytes


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--failovers", type=int, default=20, help="leader SIGKILLs (default 20)")
    ap.add_argument("--write-interval", type=float, default=0.01,
                    help="seconds the failover writer waits after each acknowledged write (default 0.01)")
    ap.add_argument("--mib", type=int, default=512, help="MiB of log lines for the ingest figure (default 512)")
    ap.add_argument("--passes", type=int, default=8,
                    help="times each run sends the --mib of batches (default 8: 4 GiB of lines a run)")
    ap.add_argument("--batch-kib", type=int, default=1024, help="KiB of lines per batch (default 1024)")
    ap.add_argument("--compression", choices=sorted(CODECS), default="gzip", help="batch codec (default gzip, level 1)")
    ap.add_argument("--threads", type=int, default=6, help="client threads posting batches (default 6)")
    ap.add_argument("--partitions", type=int, default=3,
                    help="partitions of the ingest topics (default 3, one led by each node; 1 shows a leader's and "
                         "a follower's CPU apart)")
    ap.add_argument("--rounds", type=int, default=3, help="single/cluster ingest runs, alternated (default 3 each)")
    ap.add_argument("--only", choices=["failover", "ingest"], help="measure one figure only")
    ap.add_argument("--fsync", choices=["always", "interval"], default="always",
                    help="[storage] fsync of every collector (default always, the default; interval: to see "
                         "what fsync costs)")
    ap.add_argument("--keep", action="store_true", help="keep the directory (etcd, data, each process's stderr)")
    args = ap.parse_args()
    for b in ("logpost-collector", "logpost"):
        if not os.access(os.path.join(BIN, b), os.X_OK):
            sys.exit(f"{os.path.join(BIN, b)} is missing: cargo build --release first")
    if not os.access(ETCD, os.X_OK):
        sys.exit(f"etcd not found at {ETCD}: install Debian's etcd-server or set LOGPOST_ETCD")
    if min(args.failovers, args.rounds, args.threads, args.mib, args.passes, args.batch_kib, args.partitions) < 1:
        sys.exit("--failovers, --rounds, --threads, --partitions, --mib, --passes and --batch-kib must be at least 1")
    if args.mib > 1024:
        sys.exit("--mib: at most 1024 (the input file's size); --passes sends it more than once")
    signal.signal(signal.SIGTERM, on_sigterm)
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    work = tempfile.mkdtemp(prefix="cluster-", dir=os.path.join(HERE, "out"))
    failed = True
    try:
        etcd = Etcd(work)
        storage = f'[storage]\nfsync = "{args.fsync}"\n'
        cluster = Cluster(work, etcd, storage)
        print(f"etcd {etcd.url}; nodes " + ", ".join(f"{id} {n.url}" for id, n in cluster.nodes.items())
              + f"; in {work}", file=sys.stderr)
        ingest = failover = None
        if args.only in (None, "ingest"):
            single = Collector(work, "single", storage)
            single.start()
            ingest = ingest_rounds(cluster, single, args)
            single.kill9()
        if args.only in (None, "failover"):
            failover = failover_rounds(cluster, args.failovers, args.write_interval)
        report(args, ingest, failover)
        failed = False
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    except SystemExit:
        print("terminated", file=sys.stderr)
        raise
    finally:
        CHILDREN.kill_all()
        if args.keep or failed:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


def report(args, ingest, failover):
    summary = []
    if failover:
        rows, writer, stored = failover
        print(f"\n## Failover: {len(rows)} SIGKILLs of the leader of a 1-partition topic, replication factor 3, "
              f"min_insync_replicas 2, session_timeout 2s; one writer, 10 records a batch, "
              f"{args.write_interval * 1000:.0f} ms between acknowledged writes\n")
        print("| round | killed ((c): controller) | successor, epoch | election ms | first ack ms | failed writes "
              "| restart: listening, in ISR ms |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            print(f"| {r['round']} | {r['killed']}{' (c)' if r['controller'] else ''} | {r['successor']}, {r['epoch']} | "
                  f"{r['election'] * 1000:.0f} | {r['failover'] * 1000:.0f} | {r['failed_writes']} | "
                  f"{r['listening'] * 1000:.0f}, {r['rejoin'] * 1000:.0f} |")
        fo = [r["failover"] for r in rows]
        el = [r["election"] for r in rows]
        print("\n| measure | p50 | p99 | max | min |")
        print("| --- | --- | --- | --- | --- |")
        measures = [("SIGKILL to first acknowledged write on the successor", fo),
                    ("SIGKILL to the new leader in /v1/cluster (election)", el),
                    ("election to first acknowledged write", [a - b for a, b in zip(fo, el)])]
        for killed_controller in (True, False):
            xs = [r["failover"] for r in rows if r["controller"] == killed_controller]
            if xs:
                measures.append((f"first acknowledged write, {len(xs)} rounds whose killed leader "
                                 f"{'was' if killed_controller else 'was not'} the controller", xs))
        measures.append(("restart of the killed node until it is in the ISR again", [r["rejoin"] for r in rows]))
        for name, xs in measures:
            print(f"| {name} | {pct(xs, 50) * 1000:.0f} ms | {pct(xs, 99) * 1000:.0f} ms | {max(xs) * 1000:.0f} ms | "
                  f"{min(xs) * 1000:.0f} ms |")
        print(f"\n{len(writer.acks):,} writes acknowledged ({writer.records:,} records; the topics' high watermarks "
              f"add up to {stored:,}), {len(writer.failures):,} refused or unreachable")
        p99 = pct(fo, 99)
        summary.append(f"failover p50 {pct(fo, 50):.2f} s, p99 {p99:.2f} s, max {max(fo):.2f} s over {len(fo)} "
                       f"(target p99 < 3 s: {'met' if p99 < 3 else 'missed'})")
    if ingest:
        rows, nlines, raw, nbodies, body_bytes = ingest
        print(f"\n## Ingest: {nlines:,} lines, {raw / MiB:.0f} MiB raw, sent {args.passes} times a run, "
              f"in {nbodies} RecordBatch v2 bodies of "
              f"{args.batch_kib} KiB of lines ({args.compression}{' level 1' if args.compression == 'gzip' else ''}, "
              f"{body_bytes / MiB:.0f} MiB on the wire), {args.threads} client threads, {args.partitions} partitions, "
              f"fsync {args.fsync}; cluster: replication factor 3, acks=all\n")
        print("| run | MiB/s (raw lines) | records/s | wire MiB/s | request p50 / p99 ms "
              "| collector CPU-s/GiB (per node) | client CPU-s/GiB | leaders of the partitions |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in rows:
            per = f" ({' + '.join(f'{c:.2f}' for c in r['node_cpu'])})" if r["kind"] == "cluster" else ""
            print(f"| {r['kind']} {r['round']} | {r['mibs']:.1f} | {r['rps']:,.0f} | {r['wire']:.1f} | "
                  f"{r['p50'] * 1000:.0f} / {r['p99'] * 1000:.0f} | {r['cpu_gib']:.2f}{per} | {r['client_gib']:.2f} | "
                  f"{', '.join(map(str, r['leaders'])) if r['kind'] == 'cluster' else 'one node'} |")
        resent = sum(r["retries"] for r in rows)
        if resent:
            print(f"\n{resent} posts were answered 421 or 503 and sent again (see above)")
        single = statistics.median(r["mibs"] for r in rows if r["kind"] == "single")
        repl = statistics.median(r["mibs"] for r in rows if r["kind"] == "cluster")
        ratio = repl / single
        print(f"\nmedians: single node {single:.1f} MiB/s, cluster {repl:.1f} MiB/s: {ratio * 100:.1f}%")
        summary.append(f"replicated ingest {repl:.1f} MiB/s = {ratio * 100:.1f}% of single-node {single:.1f} MiB/s "
                       f"(target >= 40%: {'met' if ratio >= 0.4 else 'missed'})")
    print("\nsummary: " + "; ".join(summary))


if __name__ == "__main__":
    main()
