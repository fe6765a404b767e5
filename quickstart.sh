#!/usr/bin/env bash
# logpost quick start: builds the binaries, starts a collector and an agent
# on sample logs in a temporary directory, shows lines arriving, runs a few
# queries, tells you what to try next and ends with the web page's URL.
# Ctrl-C stops everything.
#
#   ./quickstart.sh          # interactive: keeps running until Ctrl-C
#   ./quickstart.sh --once   # runs the demo and exits (used by the tests)
#
# Set LOGPOST_SKIP_BUILD=1 to use binaries already in target/release.
set -euo pipefail
cd "$(dirname "$0")"
root=$(pwd)
once=0
[ "${1:-}" = "--once" ] && once=1

bin="$root/target/release"
if [ "${LOGPOST_SKIP_BUILD:-0}" != 1 ]; then
  echo "==> building (cargo build --release; the first build takes a few minutes)"
  cargo build --release
fi
for b in logpost-agent logpost-collector logpost; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: run cargo build --release" >&2; exit 1; }
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/logpost-quickstart.XXXXXX")
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "==> stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
  echo "stopped; removed $dir"
}
trap cleanup INT TERM EXIT

mkdir -p "$dir/logs"
sed "s|@DIR@|$dir|g" configs/quickstart/collector.toml > "$dir/collector.toml"
echo "==> starting the collector (data in $dir/collector)"
"$bin/logpost-collector" --config "$dir/collector.toml" > "$dir/collector.out" 2> "$dir/collector.log" &
pids+=($!)
url=""
for _ in $(seq 1 1200); do # up to a minute on a busy machine
  url=$(sed -n 's/^logpost-collector listening on //p' "$dir/collector.out" 2>/dev/null || true)
  [ -n "$url" ] && break
  sleep 0.05
done
[ -n "$url" ] || { echo "collector did not start:" >&2; cat "$dir/collector.log" >&2; exit 1; }
echo "    listening on $url"
export LOGPOST_COLLECTOR="$url"

# Sample logs: an application log and a syslog, growing while the demo runs.
levels=(INFO INFO INFO WARN INFO ERROR INFO DEBUG)
users=(alice bob carol dave)
write_lines() {
  local n=$1 i ts lvl
  for ((i = 0; i < n; i++)); do
    ts=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
    lvl=${levels[$((RANDOM % ${#levels[@]}))]}
    case $lvl in
      ERROR) echo "$ts $lvl checkout: payment declined order=$RANDOM user=${users[$((RANDOM % 4))]} latency_ms=$((RANDOM % 900))" ;;
      WARN)  echo "$ts $lvl cache: slow lookup key=session:$RANDOM latency_ms=$((RANDOM % 400 + 200))" ;;
      *)     echo "$ts $lvl http: GET /api/items/$((RANDOM % 100)) status=200 user=${users[$((RANDOM % 4))]} latency_ms=$((RANDOM % 80))" ;;
    esac
  done >> "$dir/logs/app.log"
  echo "$(date '+%b %e %H:%M:%S') quickstart sshd[$$]: Accepted publickey for ${users[$((RANDOM % 4))]} from 10.0.0.$((RANDOM % 250)) port $((RANDOM % 60000)) ssh2" >> "$dir/logs/syslog"
}
write_lines 200
( while true; do write_lines 5; sleep 0.5; done ) &
pids+=($!)

sed -e "s|@DIR@|$dir|g" -e "s|@URL@|$url|g" configs/quickstart/agent.toml > "$dir/agent.toml"
echo "==> starting the agent (tailing $dir/logs)"
"$bin/logpost-agent" --config "$dir/agent.toml" 2> "$dir/agent.log" &
pids+=($!)

echo "==> waiting for lines to arrive"
n=0
deadline=$((SECONDS + 90))
while [ "$SECONDS" -lt "$deadline" ]; do
  n=$("$bin/logpost" query app --limit 0 --output raw 2>/dev/null | wc -l || true)
  [ "${n:-0}" -ge 200 ] && break
  sleep 0.1
done
[ "${n:-0}" -ge 200 ] || { echo "only ${n:-0} of 200 lines arrived in 90 s; agent log:" >&2; cat "$dir/agent.log" >&2; exit 1; }
echo
echo "\$ logpost topics"
"$bin/logpost" topics
echo
echo "\$ logpost query app --limit 5"
"$bin/logpost" query app --limit 5
echo
echo "\$ logpost query app --grep ERROR --limit 5 --output raw"
"$bin/logpost" query app --grep ERROR --limit 5 --output raw || true
echo
cat <<MSG
==> logpost is running: collector at $url, agent tailing $dir/logs
Try, in another terminal:
  export LOGPOST_COLLECTOR=$url
  $bin/logpost topics
  $bin/logpost query app --grep 'ERROR|WARN'
  $bin/logpost query system --output json --limit 3
  echo "\$(date -u +%FT%TZ) ERROR hello from you" >> $dir/logs/app.log
Logs of the processes: $dir/collector.log, $dir/agent.log
MSG
[ "$once" = 1 ] || echo "Press Ctrl-C to stop."
# Last, so that it is what stays on screen: the collector's own web page.
echo
echo "==> Search, explore and live-tail these logs in your browser:"
echo "    $url/"
if [ "$once" = 1 ]; then
  exit 0
fi
while true; do sleep 1; done
