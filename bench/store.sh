#!/usr/bin/env bash
# Store benchmark (not a timed test): ingest rate of the store and the analyst's queries
# over N stored flows, plus `read` with and without the store on a twgen capture.
#
#   bench/store.sh                 # N=10000000, DIR=/tmp/tw-store-bench
#   N=1000000 bench/store.sh
#
# Results go to BENCHMARKS.md ("Store") by hand, with the command.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000000}
DIR=${DIR:-/tmp/tw-store-bench}
PKTS=${PKTS:-3000000}
mkdir -p "$DIR"

cargo build --release -p tunnelwatch -p twgen -p tunnelwatch-store --example store_bench
T=${CARGO_TARGET_DIR:-target}/release

echo "== store ingest and queries, $N synthetic records"
rm -f "$DIR/store.db" "$DIR/store.db-wal" "$DIR/store.db-shm"
"$T/examples/store_bench" "$DIR/store.db" "$N"
ls -l "$DIR/store.db"

echo "== the same queries through the CLI (cold process each time)"
for cmd in \
  "views clients --top 20 --by out_bytes --depth 1" \
  "views clients --top 20 --by out_bytes" \
  "flows host 10.0.1.44 --format json"; do
  /usr/bin/time -f "%e s  %M KiB  tunnelwatch $cmd" "$T/tunnelwatch" $cmd --db "$DIR/store.db" > /dev/null
done

echo "== read with and without the store ($PKTS packets amplified from examples/demo.pcap)"
[ -f "$DIR/amp.pcap" ] || "$T/twgen" amplify examples/demo.pcap "$DIR/amp.pcap" --target-packets "$PKTS"
for run in "--no-store" "--db $DIR/read.db"; do
  rm -f "$DIR/read.db" "$DIR/read.db-wal" "$DIR/read.db-shm"
  /usr/bin/time -f "%e s  %U user  %M KiB  read $run" \
    "$T/tunnelwatch" read "$DIR/amp.pcap" --no-progress --flows /dev/null $run 2>&1 | grep -E "records|store|read "
done
