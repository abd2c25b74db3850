#!/usr/bin/env bash
# tunnelwatch attack lab: builds four network namespaces, runs real attack and benign
# traffic between them, captures it on the victim and writes the ground truth.
# See tests/lab/README.md.   Usage: sudo tests/lab/run.sh [--out DIR] [--only a,b,..]
set -Eeuo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$LAB_DIR
ONLY=""
usage() {
    cat <<EOF
usage: $0 [--out DIR] [--only NAME[,NAME...]] [--list] [--keep-logs]
  --out DIR   write DIR/truth.json and DIR/captures/*.pcap (default: $LAB_DIR)
  --only ...  run only these scenarios (truth.json then lists only those)
  --list      list the scenarios and exit
  --keep-logs keep the scratch dir (tool output, tcpdump logs) even on success
Must run as root (namespaces, raw sockets); installs missing tools with apt-get.
EOF
}
LIST=0
KEEP=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --out=*) OUT=${1#--out=}; shift ;;
        --only) ONLY=$2; shift 2 ;;
        --only=*) ONLY=${1#--only=}; shift ;;
        --list) LIST=1; shift ;;
        --keep-logs) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

# ---------------------------------------------------------------------------- lab plan
NS_SW=twlab-sw NS_ATK=twlab-atk NS_SRV=twlab-srv NS_CLI=twlab-cli
ATK4=10.77.0.1 SRV4=10.77.0.2 CLI4=10.77.0.3
ATK6=fd77::1 SRV6=fd77::2 CLI6=fd77::3
SPOOF_NET=10.77.1.0/24           # spoofed SYN-flood sources, routed back to the attacker
FILTERED=3000-3099               # victim ports whose SYNs the victim's firewall drops
SNAP=200                         # capture snap length
MAXPKT=6000                      # hard cap on packets per capture
T0=$(date +%s)

log() { printf '%s\n' "$*" >&2; }
die() { log "run.sh: $*"; exit 1; }

# ---------------------------------------------------------------------------- tools
PY=/usr/bin/python3
need_pkgs() {
    local -a miss=()
    command -v nmap >/dev/null || miss+=(nmap)
    command -v hping3 >/dev/null || miss+=(hping3)
    command -v tcpdump >/dev/null || miss+=(tcpdump)
    command -v ip >/dev/null || miss+=(iproute2)
    command -v ethtool >/dev/null || miss+=(ethtool)
    command -v nft >/dev/null || miss+=(nftables)
    [[ -x /usr/sbin/sshd ]] || miss+=(openssh-server)
    command -v ssh >/dev/null || miss+=(openssh-client)
    command -v ssh-keygen >/dev/null || miss+=(openssh-client)
    command -v dig >/dev/null || miss+=(bind9-dnsutils)
    command -v dnsmasq >/dev/null || miss+=(dnsmasq-base)
    command -v curl >/dev/null || miss+=(curl)
    command -v timeout >/dev/null || miss+=(coreutils)
    command -v xargs >/dev/null || miss+=(findutils)
    [[ -x $PY ]] || miss+=(python3)
    printf '%s\n' "${miss[@]}" | sort -u | grep -v '^$' || true
}
install_tools() {
    local pkgs
    pkgs=$(need_pkgs)
    [[ -z $pkgs ]] && return 0
    log "installing: $(echo $pkgs)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
    [[ -z $(need_pkgs) ]] || die "could not install: $(need_pkgs | tr '\n' ' ')"
}

# ---------------------------------------------------------------------------- scenarios
# Each scenario: name kind tool netns attacker victim expect_rules incidental_rules drain
# description, and the command (bash text run inside the namespace, in the scratch dir).
SCEN=()
add() { SCEN+=("$(printf '%s\x1f' "$@")"); }

NMAP="nmap -Pn -n --max-retries 1"
# attacks ------------------------------------------------------------------------------
add scan_syn attack nmap $NS_ATK $ATK4 $SRV4 "port_scan half_open_closed half_open_open" "" 1 \
    "nmap SYN scan of ports 1-1024: SYN->RST/ACK on closed ports, SYN->SYN/ACK->RST on open ones" \
    "timeout 60 $NMAP -sS -p 1-1024 --max-rate 1000 $SRV4"
add scan_fin attack nmap $NS_ATK $ATK4 $SRV4 "port_scan fin_scan" "" 1 \
    "nmap FIN scan of 1-1024: lone FIN, RST/ACK from closed ports, silence from open ones" \
    "timeout 60 $NMAP -sF -p 1-1024 --max-rate 1000 $SRV4"
add scan_xmas attack nmap $NS_ATK $ATK4 $SRV4 "port_scan xmas_scan urg_without_pointer" "winnuke" 1 \
    "nmap XMAS scan of 1-1024: FIN+PSH+URG with urgent pointer 0, RST/ACK from closed ports (port 139 included, so URG to 139 too)" \
    "timeout 60 $NMAP -sX -p 1-1024 --max-rate 1000 $SRV4"
add scan_null attack nmap $NS_ATK $ATK4 $SRV4 "port_scan null_scan" "" 1 \
    "nmap NULL scan of 1-1024: no flags at all, RST/ACK from closed ports" \
    "timeout 60 $NMAP -sN -p 1-1024 --max-rate 1000 $SRV4"
add scan_ack attack nmap $NS_ATK $ATK4 $SRV4 "port_scan ack_scan" "" 1 \
    "nmap ACK scan of 1-1024: lone ACK without a connection, RST from every port" \
    "timeout 60 $NMAP -sA -p 1-1024 --max-rate 1000 $SRV4"
add scan_connect attack nmap $NS_ATK $ATK4 $SRV4 "port_scan half_open_closed" "" 1 \
    "nmap connect scan of 1-1024 (kernel SYNs with options): RST/ACK from closed ports, full handshake then RST on open ones" \
    "timeout 60 $NMAP -sT -p 1-1024 --max-rate 1000 $SRV4"
add scan_syn_ipv6 attack nmap $NS_ATK $ATK6 $SRV6 "port_scan half_open_closed half_open_open" "" 1 \
    "nmap SYN scan over IPv6 of ports 1-1024" \
    "timeout 60 $NMAP -6 -sS -p 1-1024 --max-rate 1000 $SRV6"
add scan_syn_filtered attack nmap $NS_ATK $ATK4 $SRV4 "port_scan syn_no_answer" "" 1 \
    "nmap SYN scan of ports $FILTERED that the victim's nftables drops: every SYN (and nmap's retry) goes unanswered" \
    "timeout 60 $NMAP -sS -p $FILTERED --max-rate 500 $SRV4"
add os_detect attack nmap $NS_ATK $ATK4 $SRV4 "reserved_bits pointer_without_urg urg_without_pointer" "half_open_closed half_open_open xmas_scan null_scan ack_scan" 1 \
    "nmap OS detection against 4 ports: SYN probes, ECN probe (SYN+ECE+CWR, reserved bit, urgent pointer 0xF7F5 without URG), T2-T7 (NULL, SYN+FIN+PSH+URG, ACK, FIN+PSH+URG), UDP and ICMP probes" \
    "timeout 120 $NMAP -O --max-os-tries 1 -p 22,80,139,443 $SRV4"
add land attack hping3 $NS_ATK $SRV4 $SRV4 "land" "syn_no_answer" 1 \
    "hping3 land: SYN from $SRV4:80 to $SRV4:80 (source = destination), sent by the attacker" \
    "timeout 20 hping3 -I eth0 -S -a $SRV4 -s 80 -p 80 -k -c 5 -i u200000 $SRV4"
add winnuke attack hping3 $NS_ATK $ATK4 $SRV4 "winnuke urg_without_pointer" "" 1 \
    "hping3 WinNuke: lone URG segments (urgent pointer 0) to port 139" \
    "timeout 20 hping3 -I eth0 -U -p 139 -c 5 -i u200000 $SRV4"
add winnuke_oob attack python3 $NS_ATK $ATK4 $SRV4 "winnuke" "" 1 \
    "WinNuke as it was done: a real connection to port 139 sending out-of-band (MSG_OOB) bytes, so URG with a valid urgent pointer" \
    "timeout 20 python3 lab.py oob $SRV4 139 3"
add crafted_flags attack hping3 $NS_ATK $ATK4 $SRV4 "reserved_bits urg_without_pointer" "xmas_scan null_scan" 1 \
    "hping3 odd flag sets to open port 80: ECE+CWR alone (hping3 -X -Y, the bits the NFR seed masks as reserved), FIN+PSH+URG with urgent pointer 0, no flags, SYN+FIN; Linux answers none of them" \
    "s=5000; for f in '-X -Y' '-F -P -U' '' '-S -F'; do s=\$((s + 100)); timeout 10 hping3 -I eth0 \$f -s \$s -p 80 -c 3 -i u200000 $SRV4; done"
add crafted_options attack hping3 $NS_ATK $ATK4 $SRV4 "bad_tcp_option" "half_open_open" 1 \
    "hping3 SYNs to port 80 whose data offset (-O 6) turns 4 payload bytes into TCP options: unknown kind 99 (63 04 00 00), MSS with length 8 overrunning the header (02 08 05 b4), window scale with length 1 (03 01 00 00); the victim still answers SYN/ACK, the attacker's kernel resets" \
    "s=4000; for o in opt-unknown99.bin opt-overrun.bin opt-len1.bin; do s=\$((s + 100)); timeout 10 hping3 -I eth0 -S -O 6 -E \$o -d 4 -s \$s -p 80 -c 2 -i u200000 $SRV4; done"
add idle_connections attack python3 $NS_ATK $ATK4 $SRV4 "unused_connection" "" 1 \
    "connect-and-idle DoS: 30 connections to ports 80 and 8080 that send nothing, held 6 s, then closed (FIN)" \
    "timeout 30 python3 lab.py idle $SRV4 80,8080 30 6"
add zero_window attack python3 $NS_ATK $ATK4 $SRV4 "zero_window" "ack_storm" 1 \
    "zero-window exhaustion: 4 clients with SO_RCVBUF 1024 request an 8 MB file over HTTP and never read; their window falls to 0 and for 10 s the server's zero-window probes are answered with window-0 ACKs (the same pure ACKs repeated both ways); closing with unread data resets" \
    "timeout 30 python3 lab.py zerowin $SRV4 80 4 10"
# benign -------------------------------------------------------------------------------
add benign_web benign curl $NS_CLI $CLI4,$CLI6 $SRV4,$SRV6 "" "" 1 \
    "30 HTTP GETs with curl, 15 over IPv4 and 15 over IPv6, one connection each" \
    "for i in \$(seq 1 15); do curl -sS -o /dev/null --max-time 5 http://$SRV4/page\$i.html; curl -sS -o /dev/null --max-time 5 'http://[$SRV6]/page'\$i.html; done"
add benign_dns benign dig $NS_CLI $CLI4,$CLI6 $SRV4,$SRV6 "" "" 1 \
    "30 DNS queries to dnsmasq: 20 over UDP/IPv4, 5 over UDP/IPv6, 5 over TCP" \
    "for n in www mail ftp db files; do for t in A AAAA MX TXT; do dig +tries=1 +time=2 +short @$SRV4 \$n.lab.test \$t; done; done; for n in www mail ftp db files; do dig +tries=1 +time=2 +short @$SRV6 \$n.lab.test AAAA; dig +tcp +tries=1 +time=2 +short @$SRV4 \$n.lab.test A; done"
add benign_ssh benign ssh $NS_CLI $CLI4,$CLI6 $SRV4,$SRV6 "" "" 1 \
    "two SSH sessions (IPv4, IPv6) with a throwaway key, each running a few commands" \
    "for h in $SRV4 $SRV6; do timeout 20 ssh -F ssh_config root@\$h 'uname -sr; id -un; ls /etc | wc -l; head -c 20000 /dev/zero | wc -c'; done"
add benign_bulk benign python3 $NS_CLI $CLI4 $SRV4 "" "" 1 \
    "bulk TCP download of 2 MiB from port 9000" \
    "timeout 60 python3 lab.py bulk $SRV4 9000 2097152"
# last: the victim keeps retransmitting SYN/ACKs to the spoofed sources for a minute,
# which would leak into any capture taken after it
add syn_flood attack hping3 $NS_ATK 10.77.1.1-10.77.1.250 $SRV4 "syn_flood" "" 3 \
    "hping3 SYN flood on port 80 from 250 spoofed lab sources ($SPOOF_NET, routed back to the attacker, which drops the SYN/ACKs), 8 SYNs each = 2000 SYNs; the victim answers with SYN/ACKs (SYN cookies once its queue is full)" \
    "seq 1 250 | sed 's/^/10.77.1./' | xargs -P 25 -I{} timeout 10 hping3 -I eth0 -q -S -a {} -p 80 -c 8 -i u5000 $SRV4"

if [[ $LIST == 1 ]]; then
    for s in "${SCEN[@]}"; do IFS=$'\x1f' read -r -a f <<<"$s"; printf '%-18s %-6s %s\n' "${f[0]}" "${f[1]}" "${f[9]}"; done
    exit 0
fi
wanted() { [[ -z $ONLY ]] || [[ ",$ONLY," == *",$1,"* ]]; }

# ---------------------------------------------------------------------------- teardown
[[ $EUID -eq 0 ]] || die "must run as root"
exec 9>/run/twlab.lock
flock -n 9 || die "another lab run holds /run/twlab.lock"
WORK=""
PIDS=()          # background processes this script started and has not reaped yet
forget_pid() {
    local -a keep=()
    local p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
teardown() {
    local rc=$?
    trap - EXIT INT TERM ERR
    set +e
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    for ns in $NS_ATK $NS_SRV $NS_CLI $NS_SW; do
        if ip netns list | grep -qw "^$ns"; then
            # anything still running inside our own namespaces was started by this lab
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
            ip netns del "$ns" 2>/dev/null
        fi
    done
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $rc -ne 0 ]]; then log "run.sh: failed (exit $rc); logs kept in $WORK"
        elif [[ $KEEP == 1 ]]; then log "logs kept in $WORK"
        else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

install_tools
mkdir -p "$OUT/captures"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/twlab.XXXXXX)
chmod 700 "$WORK"
cp "$LAB_DIR/lab.py" "$WORK/lab.py"
META=$WORK/scenarios.jsonl
: >"$META"

# a previous run that was killed hard may have left its namespaces behind
for ns in $NS_ATK $NS_SRV $NS_CLI $NS_SW; do
    if ip netns list | grep -qw "^$ns"; then
        log "removing leftover namespace $ns"
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip netns del "$ns"
    fi
done

# ---------------------------------------------------------------------------- tool versions
{
    echo "nmap=$(nmap --version | head -1)"
    echo "hping3=$(hping3 --version 2>&1 | head -1)"
    echo "tcpdump=$(tcpdump --version 2>&1 | head -1); $(tcpdump --version 2>&1 | sed -n 2p)"
    echo "openssh=$(ssh -V 2>&1)"
    echo "dig=$(dig -v 2>&1 | head -1)"
    echo "dnsmasq=$(dnsmasq --version | head -1)"
    echo "curl=$(curl --version | head -1)"
    echo "python3=$($PY --version 2>&1)"
    echo "iproute2=$(ip -V)"
    echo "nftables=$(nft --version)"
    echo "kernel=$(uname -sr)"
    echo "debian=$(cat /etc/debian_version 2>/dev/null || echo '?')"
} >"$WORK/tools.txt"
$PY - "$WORK/tools.txt" "$WORK/tools.json" <<'EOF'
import json, sys
d = dict(l.rstrip("\n").split("=", 1) for l in open(sys.argv[1]) if "=" in l)
json.dump(d, open(sys.argv[2], "w"), indent=1)
EOF

# ---------------------------------------------------------------------------- network
log "building namespaces $NS_ATK $NS_SRV $NS_CLI (hosts) and $NS_SW (switch)"
ip netns add $NS_SW
ip netns exec $NS_SW sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n $NS_SW link set lo up
ip -n $NS_SW link add twbr type bridge stp_state 0 mcast_snooping 0
ip -n $NS_SW link set twbr up
host() { # ns ip4 ip6
    local ns=$1 v4=$2 v6=$3 port=twp-${1#twlab-}
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw \
        net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0 \
        net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.all.accept_ra=0 \
        net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.all.router_solicitations=0
    ip -n "$ns" link set lo up
    ip -n "$ns" link add eth0 type veth peer name "$port" netns $NS_SW
    ip -n $NS_SW link set "$port" master twbr up
    # real checksums and wire-sized segments in the captures (no offloads)
    ip netns exec "$ns" ethtool -K eth0 tx off tso off gso off gro off >/dev/null 2>&1 || true
    ip netns exec $NS_SW ethtool -K "$port" tx off tso off gso off gro off >/dev/null 2>&1 || true
    ip -n "$ns" addr add "$v4/24" dev eth0
    ip -n "$ns" addr add "$v6/64" dev eth0 nodad
    ip -n "$ns" link set eth0 up
}
host $NS_ATK $ATK4 $ATK6
host $NS_SRV $SRV4 $SRV6
host $NS_CLI $CLI4 $CLI6
# SYN/ACKs to the spoofed flood sources go back to the attacker (who drops them)
ip -n $NS_SRV route add $SPOOF_NET via $ATK4
# the victim's firewall silently drops one port range (SYN without answer)
ip netns exec $NS_SRV nft -f - <<EOF
table inet twlab {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport $FILTERED drop
    }
}
EOF
for ns in $NS_ATK $NS_SRV $NS_CLI; do
    [[ -z $(ip -n "$ns" route show default) && -z $(ip -n "$ns" -6 route show default) ]] || die "$ns has a default route"
done

# ---------------------------------------------------------------------------- victim services
mkdir -p "$WORK/www"
for i in $(seq 1 20); do
    { echo "<html><head><title>page $i</title></head><body><h1>lab page $i</h1>"
      for j in $(seq 1 $((i * 8))); do echo "<p>line $j of page $i: tunnelwatch attack lab</p>"; done
      echo "</body></html>"; } >"$WORK/www/page$i.html"
done
cp "$WORK/www/page1.html" "$WORK/www/index.html"
truncate -s 8M "$WORK/www/big.bin"
printf '\x63\x04\x00\x00' >"$WORK/opt-unknown99.bin"
printf '\x02\x08\x05\xb4' >"$WORK/opt-overrun.bin"
printf '\x03\x01\x00\x00' >"$WORK/opt-len1.bin"

ssh-keygen -q -t ed25519 -N '' -C twlab-host -f "$WORK/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C twlab-client -f "$WORK/id_ed25519"
cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
cat >"$WORK/sshd_config" <<EOF
Port 22
ListenAddress $SRV4
ListenAddress $SRV6
HostKey $WORK/ssh_host_ed25519_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
LogLevel ERROR
EOF
cat >"$WORK/ssh_config" <<EOF
Host *
    IdentityFile $WORK/id_ed25519
    IdentitiesOnly yes
    BatchMode yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    GlobalKnownHostsFile /dev/null
    ConnectTimeout 5
    LogLevel ERROR
EOF
mkdir -p /run/sshd
/usr/sbin/sshd -t -f "$WORK/sshd_config" || die "sshd config rejected"

log "starting victim services in $NS_SRV (http :80, echo :8080, bulk :9000, :139, sshd :22, dnsmasq :53)"
(cd "$WORK" && exec ip netns exec $NS_SRV $PY lab.py serve "$WORK/www") >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
ip netns exec $NS_SRV /usr/sbin/sshd -D -e -f "$WORK/sshd_config" >"$WORK/sshd.log" 2>&1 &
PIDS+=($!)
ip netns exec $NS_SRV dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --no-poll --bind-interfaces --listen-address=$SRV4 --listen-address=$SRV6 --user=root --group=root \
    --pid-file="$WORK/dnsmasq.pid" --log-facility="$WORK/dnsmasq-queries.log" \
    --local=/lab.test/ --domain=lab.test \
    --host-record=www.lab.test,$SRV4,$SRV6 --host-record=mail.lab.test,$SRV4,$SRV6 \
    --host-record=ftp.lab.test,$SRV4,$SRV6 --host-record=db.lab.test,$SRV4,$SRV6 \
    --host-record=files.lab.test,$SRV4,$SRV6 \
    --mx-host=www.lab.test,mail.lab.test,10 --mx-host=mail.lab.test,mail.lab.test,10 \
    --txt-record=www.lab.test,"tunnelwatch lab" --txt-record=mail.lab.test,"v=spf1 -all" \
    >"$WORK/dnsmasq.log" 2>&1 &
PIDS+=($!)
for p in 80 8080 9000 139 22 53; do
    ip netns exec $NS_CLI $PY "$WORK/lab.py" wait-tcp $SRV4 $p 15 || die "victim port $p did not come up (see $WORK)"
done
ip netns exec $NS_CLI $PY "$WORK/lab.py" wait-tcp $SRV6 80 5 || die "victim IPv6 port 80 did not come up"
ip netns exec $NS_CLI dig +short +tries=3 +time=1 @$SRV4 www.lab.test A >/dev/null || die "dnsmasq does not answer"
sleep 1   # let neighbour discovery and the readiness probes settle before capturing

# ---------------------------------------------------------------------------- capture + run
FAILED=()
run_scenario() {
    local name=$1 kind=$2 tool=$3 ns=$4 atk=$5 vic=$6 rules=$7 inc=$8 drain=$9 desc=${10} cmd=${11}
    local pcap=$OUT/captures/$name.pcap caplog=$WORK/$name.tcpdump.log toollog=$WORK/$name.log
    rm -f "$pcap"
    ip netns exec $NS_SRV timeout 300 tcpdump -i eth0 -n -Z root -s $SNAP -U -c $MAXPKT -w "$pcap" 2>"$caplog" &
    local cap=$!
    PIDS+=($cap)
    local i=0
    until grep -q "listening on" "$caplog" 2>/dev/null; do
        sleep 0.1; i=$((i + 1))
        [[ $i -lt 100 ]] || die "tcpdump did not start for $name: $(cat "$caplog")"
    done
    sleep 0.3
    local t1 rc=0
    t1=$(date +%s%N)
    (cd "$WORK" && exec ip netns exec "$ns" env PATH=/usr/sbin:/usr/bin:/sbin:/bin bash -c "$cmd") \
        >"$toollog" 2>&1 || rc=$?
    sleep "$drain"
    kill -INT "$cap" 2>/dev/null || true
    wait "$cap" 2>/dev/null || true
    forget_pid "$cap"
    local n secs
    n=$(sed -n 's/^\([0-9]*\) packets\{0,1\} captured.*/\1/p' "$caplog")
    secs=$(( ($(date +%s%N) - t1) / 100000000 ))
    secs="$((secs / 10)).$((secs % 10))"
    printf '  %-18s %-6s %6s packets %8s bytes  %5ss  %s%s\n' "$name" "$kind" "${n:-0}" \
        "$(stat -c %s "$pcap" 2>/dev/null || echo 0)" "$secs" "$tool" \
        "$([[ $rc -ne 0 ]] && echo " (exit $rc)")" >&2
    if [[ ${n:-0} -eq 0 || ! -s $pcap ]]; then FAILED+=("$name: nothing captured"); fi
    if [[ $rc -ne 0 && $tool != hping3 ]]; then FAILED+=("$name: $tool exited $rc (see $toollog)"); fi
    $PY "$WORK/lab.py" record "$META" name="$name" pcap="captures/$name.pcap" kind="$kind" \
        tool="$tool" netns="$ns" attacker="$atk" victim="$vic" expect_rules="$rules" \
        incidental_rules="$inc" description="$desc" command="$cmd"
}

log "running scenarios (captures on $NS_SRV eth0, snaplen $SNAP) into $OUT/captures"
for s in "${SCEN[@]}"; do
    IFS=$'\x1f' read -r -a f <<<"$s"
    wanted "${f[0]}" || continue
    run_scenario "${f[@]}"
done

log ""
log "writing $OUT/truth.json"
rc=0
$PY "$WORK/lab.py" truth "$META" "$OUT" >&2 || rc=$?
for f in "${FAILED[@]}"; do log "FAILED: $f"; done
[[ ${#FAILED[@]} -eq 0 && $rc -eq 0 ]] || { log "run.sh: some scenarios failed"; exit 1; }
log "done in $(( $(date +%s) - T0 ))s"
