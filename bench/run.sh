#!/usr/bin/env bash
# run.sh — the tunnelwatch benchmark, side by side with its peers, on one capture.
#
#   bench/run.sh                 # build, make the corpus if missing, time everything
#   RUNS=5 bench/run.sh          # more runs per tool
#   TOOLS="tunnelwatch argus" bench/run.sh
#
# Steps: builds tunnelwatch and twgen with the `dist` profile (what a deployment runs:
# fat LTO, one codegen unit; see Cargo.toml); installs the Debian tools if missing
# (bench/install-tools.sh, root); creates the corpus with bench/make-corpus.sh if
# $CORPUS does not exist; then times each tool RUNS times on the same file from the page
# cache with GNU time (wall, CPU, peak RSS) and prints min/median/max, packets/s and
# the ratios to each peer. Then the flood, side by side: a spoofed SYN flood of
# $FLOOD_PKTS distinct sources through each tool once, tunnelwatch and softflowd under a
# cap of live flows, with wall time, peak RSS and tunnelwatch's eviction count.
# Exits non-zero if tunnelwatch's default `read` falls below $MIN_PPS packets/s (median).
#
# Env: CORPUS=/var/tmp/tunnelwatch-bench/corpus.pcap RUNS=3 MIN_PPS=3000000
#      FRESH=0 (keep earlier results, e.g. to rerun one tool with TOOLS=...)
#      FLOOD_PKTS=10000000 FLOOD_CAP=1000000 FLOOD_TOOLS="tunnelwatch softflowd nfpcapd argus"
#      FLOOD_TIMEOUT=120 OUT=/var/tmp/tunnelwatch-bench/results
#      FLOWMETER=path (optional: the minimal reference meter, timed as "flowmeter")
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
CORPUS=${CORPUS:-/var/tmp/tunnelwatch-bench/corpus.pcap}
RUNS=${RUNS:-3}
MIN_PPS=${MIN_PPS:-3000000}
FLOOD_PKTS=${FLOOD_PKTS:-10000000}
FLOOD_CAP=${FLOOD_CAP:-1000000}
FLOOD_TOOLS=${FLOOD_TOOLS:-tunnelwatch softflowd nfpcapd argus}
FLOOD_TIMEOUT=${FLOOD_TIMEOUT:-120}
OUT=${OUT:-/var/tmp/tunnelwatch-bench/results}
TOOLS=${TOOLS:-tunnelwatch tunnelwatch-2t tunnelwatch-1core tunnelwatch-nodetect tunnelwatch-packetpath argus nfpcapd softflowd}
[ -n "${FLOWMETER:-}" ] && TOOLS="$TOOLS flowmeter"
TARGET=${CARGO_TARGET_DIR:-$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')}
TW=$TARGET/dist/tunnelwatch
TWGEN=$TARGET/dist/twgen
REPLAY=$TARGET/dist/examples/replay
SCR=$OUT/scratch

(cd "$ROOT" && cargo build --profile dist -q -p tunnelwatch -p twgen \
  && cargo build --profile dist -q -p tunnelwatch-sensor --example replay)
need=0
for t in argus nfpcapd softflowd tcpdump iperf3 dnsmasq taskset /usr/bin/time; do command -v $t >/dev/null || need=1; done
[ $need = 0 ] || "$HERE/install-tools.sh"
if [ ! -s "$CORPUS" ]; then
  TWGEN=$TWGEN "$HERE/make-corpus.sh" "$CORPUS"
fi
[ "${FRESH:-1}" = 0 ] || rm -rf "$OUT"
mkdir -p "$OUT" "$SCR"

cmd_for() {
  case $1 in
    tunnelwatch)    echo "'$TW' read '$CORPUS' --no-store --no-progress --flows '$SCR/flows.jsonl'" ;;
    tunnelwatch-2t) echo "'$TW' read '$CORPUS' --no-store --no-progress --threads 2 --flows '$SCR/flows.jsonl'" ;;
    # The default run held to one CPU (its reading, writer and detection threads
    # share it): what the second core buys (not gated).
    tunnelwatch-1core) echo "taskset -c 0 '$TW' read '$CORPUS' --no-store --no-progress --flows '$SCR/flows.jsonl'" ;;
    # What the detectors cost: the same without them (not the default; not gated).
    tunnelwatch-nodetect) echo "'$TW' read '$CORPUS' --no-store --no-progress --no-detect --flows '$SCR/flows.jsonl'" ;;
    # The packet path alone: one sensor on one thread, ended flows dropped (no
    # records, JSON or detectors; crates/sensor/examples/replay.rs): the ceiling the
    # writer and detection sit under (not gated).
    tunnelwatch-packetpath) echo "'$REPLAY' '$CORPUS'" ;;
    argus)          echo "argus -X -r '$CORPUS' -w '$SCR/out.argus'" ;;
    nfpcapd)        echo "nfpcapd -r '$CORPUS' -w '$SCR/nf' -B 2000000" ;;
    # softflowd -r handles a batch, then waits on its control socket: ask for its
    # statistics until the packet count stops moving or it has exited at the end of
    # the file, then shut it down (which expires and exports every flow) to a local
    # UDP sink.
    softflowd)      echo "softflowd -d -r '$CORPUS' -6 -m 2000000 -v 10 -b -n 127.0.0.1:39995 -p '$SCR/sf.pid' -c '$SCR/sf.ctl' & sleep 0.2; last=-1; for i in \$(seq 1 100000); do now=\$(softflowctl -c '$SCR/sf.ctl' statistics 2>/dev/null | awk '/Packets processed/{print \$3}'); { [ -z \"\$now\" ] || [ \"\$now\" = \"\$last\" ]; } && break; last=\$now; done; softflowctl -c '$SCR/sf.ctl' shutdown >/dev/null; wait" ;;
    flowmeter)      echo "'$FLOWMETER' '$CORPUS'" ;;
  esac
}

SINK=
cleanup() { [ -n "$SINK" ] && kill "$SINK" 2>/dev/null; true; }
# A UDP sink on softflowd's export port, for at most 15 minutes.
start_sink() {
  python3 -c 'import socket,time; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",39995)); s.settimeout(1)
end=time.monotonic()+900
while time.monotonic()<end:
    try: s.recv(65535)
    except OSError: pass' & SINK=$!
}
trap cleanup EXIT
for t in $TOOLS; do
  [ $t = softflowd ] && start_sink
  for i in $(seq 1 "$RUNS"); do
    rm -rf "$SCR"; mkdir -p "$SCR/nf"
    cat "$CORPUS" > /dev/null
    c=$(cmd_for $t)
    echo "$(date +%T) $t run $i (load $(cut -d' ' -f1 /proc/loadavg)): $c" | tee -a "$OUT/log" >&2
    /usr/bin/time -v -o "$OUT/$t.$i.time" timeout 900 bash -c "$c" > "$OUT/$t.$i.out" 2>&1 || echo "  $t run $i failed (see $OUT/$t.$i.out)" >&2
  done
  [ $t = softflowd ] && { kill $SINK 2>/dev/null; SINK=; }
  [ $t = tunnelwatch ] && wc -l < "$SCR/flows.jsonl" > "$OUT/tunnelwatch.records" || true
done

# The flood, side by side: distinct spoofed sources (one flow each). tunnelwatch and
# softflowd run under a cap of $FLOOD_CAP live flows; nfpcapd and argus have no such
# cap (nfpcapd's -B only sizes its first cache), so their memory is what the flood
# makes them hold. Each tool gets one run of at most $FLOOD_TIMEOUT seconds (argus
# took ~300 s and 14 GiB here): one that is stopped is reported as such, with the
# memory it held by then.
FLOOD=$(dirname "$CORPUS")/synflood-$FLOOD_PKTS.pcap
[ -s "$FLOOD" ] || "$TWGEN" synflood "$FLOOD" --packets "$FLOOD_PKTS"
flood_cmd_for() {
  case $1 in
    tunnelwatch) echo "'$TW' read '$FLOOD' --no-store --no-progress --max-flows $FLOOD_CAP --flows /dev/null" ;;
    argus)       echo "argus -X -r '$FLOOD' -w '$SCR/flood.argus'" ;;
    nfpcapd)     echo "nfpcapd -r '$FLOOD' -w '$SCR/nf'" ;;
    softflowd)   cmd_for softflowd | sed "s|'$CORPUS'|'$FLOOD'|; s|-m 2000000|-m $FLOOD_CAP|" ;;
  esac
}
mkdir -p "$OUT/flood"
for t in $FLOOD_TOOLS; do
  rm -rf "$SCR"; mkdir -p "$SCR/nf"
  [ $t = softflowd ] && start_sink
  c=$(flood_cmd_for $t)
  echo "$(date +%T) flood $t: $c" | tee -a "$OUT/log" >&2
  rc=0
  /usr/bin/time -v -o "$OUT/flood/$t.time" timeout -k 10 "$FLOOD_TIMEOUT" bash -c "$c" > "$OUT/flood/$t.out" 2>&1 || rc=$?
  echo "$rc" > "$OUT/flood/$t.rc"
  [ $t = softflowd ] && { kill $SINK 2>/dev/null; SINK=; }
done
rm -rf "$SCR"

python3 "$HERE/summarize.py" "$OUT" "$CORPUS" "$TOOLS" "$MIN_PPS"
