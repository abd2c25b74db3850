#!/usr/bin/env bash
# Store benchmark (not a timed test): ingest rate of the store and the analyst's queries
# over N stored flows, and `read` with and without the store, on the benchmark corpus.
#
#   bench/store.sh                      # N=10000000, CORPUS=/var/tmp/tunnelwatch-bench/corpus3m.pcap
#   N=1000000 bench/store.sh
#   SYNTHETIC=1 bench/store.sh          # store_bench's synthetic records instead
#
# The records are those `tunnelwatch read CORPUS --flows` gives (bench/make-corpus.sh makes
# the corpus), stored again and again until N, each replay one day later with its own uids.
# Results go to BENCHMARKS.md ("Store") by hand, with the command.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000000}
DIR=${DIR:-/tmp/tw-store-bench}
CORPUS=${CORPUS:-/var/tmp/tunnelwatch-bench/corpus3m.pcap}
RUNS=${RUNS:-3}
mkdir -p "$DIR"

# Two commands: built together with an example, the tunnelwatch binary is not rebuilt.
cargo build --release -p tunnelwatch
cargo build --release -p tunnelwatch-store --example store_bench
T=${CARGO_TARGET_DIR:-target}/release

if [ ! -f "$CORPUS" ]; then
  echo "no corpus at $CORPUS: make one with bench/make-corpus.sh (or set CORPUS=)" >&2
  exit 1
fi

echo "== read with and without the store ($CORPUS), $RUNS runs each, alternating"
for i in $(seq "$RUNS"); do
  for run in "--no-store" "--db $DIR/read.db"; do
    rm -f "$DIR/read.db" "$DIR/read.db-wal" "$DIR/read.db-shm"
    /usr/bin/time -f "%e s wall  %U user  %S sys  %M KiB  read $run" \
      "$T/tunnelwatch" read "$CORPUS" --no-progress --flows "$DIR/flows.jsonl" $run 2>&1 |
      grep -E "store |wall"
  done
done

rm -f "$DIR/store.db" "$DIR/store.db-wal" "$DIR/store.db-shm"
if [ -n "${SYNTHETIC:-}" ]; then
  echo "== store ingest and queries, $N synthetic records"
  "$T/examples/store_bench" "$DIR/store.db" "$N"
else
  echo "== store ingest and queries, $N records replayed from the corpus's flows"
  "$T/examples/store_bench" "$DIR/store.db" "$N" "$DIR/flows.jsonl"
fi
ls -l "$DIR/store.db"

HOST=$(sed -n '1000p' "$DIR/flows.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["orig_h"])')
echo "== the same queries through the CLI (a new process each time)"
for cmd in \
  "views clients --top 20 --by out_bytes --depth 1" \
  "views clients --top 20 --by out_bytes" \
  "views servers --top 20 --by conns --depth 2" \
  "flows host $HOST --format json"; do
  /usr/bin/time -f "%e s  %M KiB  tunnelwatch $cmd" "$T/tunnelwatch" $cmd --db "$DIR/store.db" > /dev/null
done
