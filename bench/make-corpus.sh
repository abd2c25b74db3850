#!/usr/bin/env bash
# make-corpus.sh — the benchmark capture: real traffic between two network namespaces
# this script creates (veth; 10.201.0.0/24 and fd00:201::/64, nothing leaves them),
# captured with tcpdump for $DURATION seconds, then amplified by `twgen amplify` into a
# many-host capture of about $TARGET_PKTS packets (≥ 200k flows at the default size).
#
# Traffic: short HTTP/1.0 connections over IPv4 and IPv6 (curl → python http.server,
# small/medium/large objects, 404s, a rate-limited 1 MB download loop), bulk TCP
# (iperf3 streams, repeated 20 MB transfers, a reverse IPv6 transfer), a UDP iperf3
# stream, DNS (dig → dnsmasq: A/AAAA/TXT, NXDOMAIN, long random tunnel-like names),
# ICMP and ICMPv6 echo, one interactive keystroke-paced TCP session, a TCP connect scan
# and a small UDP scan. Every generator runs under `timeout`; the namespaces and every
# process started here are removed on exit, also on error.
#
# Usage (root): bench/make-corpus.sh [OUT.pcap]
# Env: DURATION=60 TARGET_PKTS=9000000 SNAPLEN=192 KEEP_BASE=0 WORK=dir TWGEN=path
set -euo pipefail

OUT=${1:-/var/tmp/tunnelwatch-bench/corpus.pcap}
DURATION=${DURATION:-60}
TARGET_PKTS=${TARGET_PKTS:-9000000}
SNAPLEN=${SNAPLEN:-192}
WORK=${WORK:-$(mktemp -d /tmp/twcorpus.XXXXXX)}
TWGEN=${TWGEN:?set TWGEN to the twgen binary (bench/run.sh does)}
PY=$(command -v python3)
NC=twc$$ NS=tws$$ VC=twc$$a VS=tws$$b
C4=10.201.0.1 S4=10.201.0.2 C6=fd00:201::1 S6=fd00:201::2
PIDS=()

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.5
  for ns in $NC $NS; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
}
trap cleanup EXIT

for t in ip ethtool tcpdump iperf3 dnsmasq dig curl ping nc python3; do
  command -v $t >/dev/null || { echo "make-corpus: missing tool $t (run bench/install-tools.sh)" >&2; exit 1; }
done
mkdir -p "$WORK/www" "$(dirname "$OUT")"
echo "make-corpus: work dir $WORK" >&2

ip netns add $NC
ip netns add $NS
ip link add $VC type veth peer name $VS
ip link set $VC netns $NC
ip link set $VS netns $NS
ip -n $NC addr add $C4/24 dev $VC
ip -n $NS addr add $S4/24 dev $VS
ip -n $NC addr add $C6/64 dev $VC nodad
ip -n $NS addr add $S6/64 dev $VS nodad
for ns in $NC $NS; do ip -n $ns link set lo up; done
ip -n $NC link set $VC up
ip -n $NS link set $VS up
# No offloads: MTU-sized frames with real checksums, as on a wire.
ip netns exec $NC ethtool -K $VC tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
ip netns exec $NS ethtool -K $VS tso off gso off gro off tx off rx off >/dev/null 2>&1 || true
cli() { ip netns exec $NC "$@"; }
srv() { ip netns exec $NS "$@"; }

for spec in s:200 m:4096 l:65536 xl:1048576; do
  head -c "${spec#*:}" /dev/urandom > "$WORK/www/${spec%%:*}"
done
(cd "$WORK/www" && exec ip netns exec $NS "$PY" -m http.server 8080 --bind :: >/dev/null 2>&1) & PIDS+=($!)
for port in 5201 5202 5203; do srv iperf3 -s -p $port >/dev/null 2>&1 & PIDS+=($!); done
srv dnsmasq -k --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces \
  --listen-address=$S4,$S6 --user=root --pid-file= --cache-size=0 \
  --address=/www.example.test/$S4 --address=/www.example.test/$S6 --local=/test/ \
  --txt-record=txt.example.test,"v=spf1 -all" --log-facility=/dev/null >/dev/null 2>&1 & PIDS+=($!)

# An echo server and a client that types: small messages, human pauses.
cat > "$WORK/typist.py" <<'PYEOF'
import random, socket, sys, threading, time
role, host, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
if role == "server":
    srv = socket.create_server((host, port), reuse_port=True)
    def echo(conn):
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=echo, args=(conn,), daemon=True).start()
else:
    rng = random.Random(42)
    conn = socket.create_connection((host, port))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        n = rng.choice([1, 1, 1, 1, 2, 3, 6])
        conn.sendall(bytes(rng.choice(b"etaoinshrdlu \r") for _ in range(n)))
        conn.recv(4096)
        time.sleep(rng.uniform(0.04, 0.35))
    conn.close()
PYEOF
srv "$PY" "$WORK/typist.py" server $S4 2222 0 & PIDS+=($!)

# DNS names: common, missing, and long random labels under a "tunnel" zone.
"$PY" - "$WORK/names.txt" <<'PYEOF'
import random, string, sys
rng = random.Random(3)
alnum = string.ascii_lowercase + string.digits
def label(lo, hi): return "".join(rng.choice(alnum) for _ in range(rng.randrange(lo, hi)))
lines = []
for _ in range(6000):
    r = rng.random()
    if r < 0.35: lines.append("www.example.test A")
    elif r < 0.5: lines.append("www.example.test AAAA")
    elif r < 0.6: lines.append("txt.example.test TXT")
    elif r < 0.85: lines.append(f"pc{rng.randrange(100000)}.corp.test A")
    else: lines.append(f"{label(30, 63)}.{label(10, 40)}.t.tunnel.test TXT")
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PYEOF
sleep 1.5

BASE="$WORK/base.pcap"
# Directly, not through srv(): $! must be tcpdump itself for the SIGINT below.
ip netns exec $NS tcpdump -i $VS -s 0 -B 262144 -Z root -w "$BASE" >/dev/null 2>"$WORK/tcpdump.err" & TCPDUMP=$!
PIDS+=($TCPDUMP)
sleep 1

D=$DURATION
bounded() { timeout --kill-after=2 "$D" "$@"; }
bounded ip netns exec $NC bash -c "while :; do curl -s 'http://$S4:8080/s?n=[1-500]' >/dev/null; done" & PIDS+=($!)
bounded ip netns exec $NC bash -c "while :; do curl -s 'http://$S4:8080/m?n=[1-300]' 'http://$S4:8080/nothing?n=[1-30]' >/dev/null; done" & PIDS+=($!)
bounded ip netns exec $NC bash -c "while :; do curl -s 'http://[$S6]:8080/s?n=[1-200]' 'http://[$S6]:8080/l?n=[1-20]' >/dev/null; done" & PIDS+=($!)
bounded ip netns exec $NC bash -c "while :; do curl -s --limit-rate 2M 'http://$S4:8080/xl' >/dev/null; sleep 2; done" & PIDS+=($!)
bounded ip netns exec $NC iperf3 -c $S4 -p 5201 -t $((D - 2)) -b 40M -P 2 >/dev/null 2>&1 & PIDS+=($!)
bounded ip netns exec $NC bash -c "while :; do iperf3 -c $S4 -p 5202 -n 20M -b 150M >/dev/null 2>&1; sleep 3; done" & PIDS+=($!)
bounded ip netns exec $NC bash -c "sleep 5; iperf3 -6 -c $S6 -p 5203 -R -t 20 -b 30M >/dev/null 2>&1; iperf3 -c $S4 -p 5203 -u -t 20 -b 8M -l 1000 >/dev/null 2>&1" & PIDS+=($!)
bounded ip netns exec $NC bash -c "while :; do dig @$S4 +tries=1 +time=1 +noall -f '$WORK/names.txt' >/dev/null; done" & PIDS+=($!)
bounded ip netns exec $NC bash -c "while :; do dig @$S6 +tries=1 +time=1 +noall -f '$WORK/names.txt' >/dev/null; done" & PIDS+=($!)
bounded ip netns exec $NC ping -q -i 0.01 -s 56 $S4 >/dev/null 2>&1 & PIDS+=($!)
bounded ip netns exec $NC ping -q -i 0.25 -s 1200 $S4 >/dev/null 2>&1 & PIDS+=($!)
bounded ip netns exec $NC ping -6 -q -i 0.1 $S6 >/dev/null 2>&1 & PIDS+=($!)
bounded ip netns exec $NC "$PY" "$WORK/typist.py" client $S4 2222 $((D - 3)) & PIDS+=($!)
bounded ip netns exec $NC bash -c "sleep $((D / 2)); nc -z -w 1 $S4 1-4000 >/dev/null 2>&1; nc -zu -w 1 $S4 1-300 >/dev/null 2>&1" & PIDS+=($!)

sleep "$D"; sleep 3
kill -INT $TCPDUMP 2>/dev/null || true
wait $TCPDUMP 2>/dev/null || true
cat "$WORK/tcpdump.err" >&2
cleanup
trap - EXIT

"$TWGEN" amplify "$BASE" "$OUT" --target-packets "$TARGET_PKTS" --snaplen "$SNAPLEN" \
  --client $C4 $C6 --server $S4 $S6
ls -l "$OUT" >&2
[ "${KEEP_BASE:-0}" = 1 ] || rm -f "$BASE"
