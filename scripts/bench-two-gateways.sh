#!/usr/bin/env bash
# Two gateways against one payrail server (docs/benchmarks.md, "Fair share
# between gateways"): gateway "shop" (B) pays one transfer per request, one
# request at a time; gateway "flood" (A) keeps full pipelines of batches in
# flight. Runs B alone, A alone, then A with B joining once A's load runs,
# each as its own payrail-loadtest process, and prints their summaries.
#
#   cargo build --release --bin payrail --bin payrail-loadtest
#   scripts/bench-two-gateways.sh                      # A: 4 x 64 x 8,190
#   A_SHAPE="--connections 4 --pipeline 64 --batch 256" scripts/bench-two-gateways.sh
#   ENGINE="in_flight_commands_max = 8192" scripts/bench-two-gateways.sh
#
# Loopback only (PORT, default 7419); the data directory is a fresh one
# under $TMPDIR and is removed at the end.
set -euo pipefail
BIN=${BIN:-target/release}
PORT=${PORT:-7419}
A_SHAPE=${A_SHAPE:---connections 4 --pipeline 64 --batch 8190}
DURATION=${DURATION:-20s}
W=$(mktemp -d "${TMPDIR:-/tmp}/payrail-two-gateways-XXXXXX")
mkdir -p "$W/a" "$W/b"
SA=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n'); SB=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
# The load test connects as the gateway in DIR/gateway.toml, whatever its name.
printf 'name = "flood"\nsecret = "%s"\n' "$SA" > "$W/a/gateway.toml"
printf 'name = "shop"\nsecret = "%s"\n' "$SB" > "$W/b/gateway.toml"
chmod 600 "$W"/*/gateway.toml
cat > "$W/server.toml" <<EOF
listen = "127.0.0.1:$PORT"
data_dir = "$W/data"

[[gateways]]
name = "flood"
secret = "$SA"

[[gateways]]
name = "shop"
secret = "$SB"

[metrics]
enabled = false

[engine]
${ENGINE:-}
EOF
"$BIN/payrail" serve --config "$W/server.toml" > "$W/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$W"' EXIT
for _ in $(seq 1 120); do grep -q "listening" "$W/server.log" && break; sleep 1; done
common=(--addr "127.0.0.1:$PORT" --mix transfers --merchants 0 --verify-max 10000 --quiet --no-report)
# shellcheck disable=SC2086
A=("$BIN/payrail-loadtest" "${common[@]}" --data-dir "$W/a" --accounts 10000 $A_SHAPE)
B=("$BIN/payrail-loadtest" "${common[@]}" --data-dir "$W/b" --accounts 1000 --connections 1 --pipeline 1 --batch 1)
"${B[@]}" --duration "$DURATION" > "$W/b-alone.txt" 2>&1 || true
"${A[@]}" --duration "$DURATION" > "$W/a-alone.txt" 2>&1 || true
# A with B: B starts 5 s after A's seeding and runs inside A's window.
"${A[@]}" --duration 30s > "$W/a-with-b.txt" 2>&1 &
flood=$!
for _ in $(seq 1 120); do grep -q "seeded in" "$W/a-with-b.txt" && break; sleep 1; done
sleep 5
"${B[@]}" --duration "$DURATION" > "$W/b-with-a.txt" 2>&1 || true
wait $flood || true
for run in b-alone a-alone b-with-a a-with-b; do
  echo "== $run"
  grep -E "^payrail-loadtest:|^transfer |^committed|failed as a whole" "$W/$run.txt" || cat "$W/$run.txt"
done
