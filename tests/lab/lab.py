#!/usr/bin/env python3
"""Helpers for the tunnelwatch attack lab (driven by run.sh; standard library only).

Sub-commands
  serve WWWDIR            victim services: HTTP on :80 (IPv4+IPv6), echo on :8080,
                          bulk source on :9000, a NetBIOS stand-in on :139
  wait-tcp HOST PORT SECS wait until a TCP port accepts connections
  idle HOST PORTS N HOLD  connect-and-idle DoS: N connections spread over PORTS
                          (comma list), nothing sent, held HOLD seconds, closed
  zerowin HOST PORT N HOLD  N clients with a tiny receive buffer request a large
                          file over HTTP and never read (receive window drops to 0)
  bulk HOST PORT BYTES    download BYTES from the bulk source and check the count
  oob HOST PORT N         connect and send N urgent (MSG_OOB) bytes (WinNuke style)
  hold HOST PORT SECS     open one connection, send a line, keep it open SECS seconds
  record META key=value.. append one scenario description (JSON line) to META
  facts PCAP              print the facts found in a capture (JSON)
  truth META OUTDIR       write OUTDIR/truth.json from META and the captures, check
                          that every expected rule has evidence in its capture
"""
import collections
import datetime
import ipaddress
import json
import os
import socket
import socketserver
import struct
import sys
import threading
import time

# ----------------------------------------------------------------------------
# services (run inside the victim namespace)


class _DualStack:
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def serve(www):
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def handle(self):
            try:
                super().handle()
            except (ConnectionError, OSError):
                pass

    class Http(_DualStack, ThreadingHTTPServer):
        pass

    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                while True:
                    b = self.request.recv(65536)
                    if not b:
                        return
                    self.request.sendall(b)
            except OSError:
                pass

    class Bulk(socketserver.StreamRequestHandler):
        def handle(self):
            try:
                n = int(self.rfile.readline().strip() or b"0")
                chunk = b"\x5a" * 65536
                while n > 0:
                    k = min(n, len(chunk))
                    self.wfile.write(chunk[:k])
                    n -= k
                self.wfile.flush()
            except (OSError, ValueError):
                pass

    class Sink(socketserver.BaseRequestHandler):
        def handle(self):
            try:
                while self.request.recv(4096):
                    pass
            except OSError:
                pass

    class Tcp(_DualStack, socketserver.ThreadingTCPServer):
        pass

    handler = functools.partial(Quiet, directory=www)
    servers = [
        Http(("::", 80), handler),
        Tcp(("::", 8080), Echo),
        Tcp(("::", 9000), Bulk),
        Tcp(("::", 139), Sink),
    ]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("serving", " ".join(str(s.server_address[1]) for s in servers), flush=True)
    while True:
        time.sleep(3600)


def _connect(host, port, timeout=5.0, rcvbuf=None):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((host, int(port)))
    return s


def wait_tcp(host, port, secs):
    end = time.time() + float(secs)
    while time.time() < end:
        try:
            _connect(host, port, 1.0).close()
            return 0
        except OSError:
            time.sleep(0.1)
    print(f"{host}:{port} not reachable after {secs}s", file=sys.stderr)
    return 1


def idle(host, ports, n, hold):
    ports = [int(p) for p in ports.split(",")]
    socks = []
    for i in range(int(n)):
        socks.append(_connect(host, ports[i % len(ports)]))
        time.sleep(0.02)
    print(f"{len(socks)} idle connections open, holding {hold}s", flush=True)
    time.sleep(float(hold))
    for s in socks:
        s.close()
    return 0


def zerowin(host, port, n, hold):
    socks = []
    for _ in range(int(n)):
        s = _connect(host, port, rcvbuf=1024)
        s.sendall(f"GET /big.bin HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        socks.append(s)
    print(f"{len(socks)} non-reading clients (SO_RCVBUF 1024), holding {hold}s", flush=True)
    time.sleep(float(hold))
    for s in socks:
        s.close()  # unread data: the kernel resets the connection
    return 0


def bulk(host, port, nbytes):
    nbytes = int(nbytes)
    # Room for the whole download in the receive buffer: a benign transfer must not
    # advertise a zero window when this process is scheduled out for a moment (a CI
    # run on two busy vCPUs did, and a zero window is attack evidence here).
    s = _connect(host, port, 30.0, rcvbuf=2 * nbytes)
    s.sendall(f"{nbytes}\n".encode())
    got = 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += len(b)
    s.close()
    print(f"bulk: received {got} bytes", flush=True)
    return 0 if got == nbytes else 1


def oob(host, port, n):
    s = _connect(host, port)
    for _ in range(int(n)):
        s.send(b"!", socket.MSG_OOB)
        time.sleep(0.2)
    time.sleep(0.3)
    s.close()
    return 0


def hold(host, port, secs):
    s = _connect(host, port)
    s.sendall(b"hello\n")
    s.recv(100)
    print("connected", flush=True)
    time.sleep(float(secs))
    s.close()
    return 0


# ----------------------------------------------------------------------------
# capture facts

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
# TCP option kinds in use today (IANA): EOL, NOP, MSS, WS, SACK-permitted, SACK,
# timestamps, MD5, user timeout, TCP-AO, MPTCP, fast open, AccECN, experiments.
KNOWN_OPTIONS = {0, 1, 2, 3, 4, 5, 8, 19, 28, 29, 30, 34, 69, 172, 174, 253, 254}
FIXED_LEN = {2: 4, 3: 3, 4: 2, 8: 10, 19: 18, 28: 4, 34: None}


def flag_name(f):
    s = "".join(c for bit, c in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"),
                                  (URG, "U"), (ACK, "A"), (ECE, "E"), (CWR, "C")) if f & bit)
    return s or "none"


def check_options(opt):
    """Returns None when the options are well formed, else a short reason."""
    i = 0
    while i < len(opt):
        kind = opt[i]
        if kind == 0:
            return None
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opt):
            return f"option {kind}: no length byte"
        ln = opt[i + 1]
        if ln < 2:
            return f"option {kind}: length {ln} < 2"
        if i + ln > len(opt):
            return f"option {kind}: length {ln} overruns the header"
        if kind not in KNOWN_OPTIONS:
            return f"unknown option kind {kind}"
        want = FIXED_LEN.get(kind)
        if want and ln != want:
            return f"option {kind}: length {ln}, expected {want}"
        if kind == 5 and (ln - 2) % 8:
            return f"SACK option length {ln}"
        i += ln
    return None


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return 0, []
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        e = "<"
    else:
        e = ">"
        magic = struct.unpack(">I", data[:4])[0]
    nano = magic == 0xA1B23C4D
    linktype = struct.unpack(e + "I", data[20:24])[0]
    recs = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack(e + "IIII", data[off:off + 16])
        recs.append((sec + frac / (1e9 if nano else 1e6), data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return linktype, recs


def parse(frame):
    """Ethernet frame -> dict for IP packets (None for ARP and the like)."""
    if len(frame) < 14:
        return None
    et = struct.unpack("!H", frame[12:14])[0]
    p = frame[14:]
    if et == 0x0800 and len(p) >= 20:
        ihl = (p[0] & 15) * 4
        tot = struct.unpack("!H", p[2:4])[0]
        pkt = {"v": 4, "src": str(ipaddress.IPv4Address(p[12:16])),
               "dst": str(ipaddress.IPv4Address(p[16:20])), "proto": p[9]}
        if struct.unpack("!H", p[6:8])[0] & 0x1FFF:
            pkt["proto"] = -1  # non-first fragment
        l4 = p[ihl:]
        l4len = tot - ihl
    elif et == 0x86DD and len(p) >= 40:
        nh = p[6]
        pkt = {"v": 6, "src": str(ipaddress.IPv6Address(p[8:24])),
               "dst": str(ipaddress.IPv6Address(p[24:40]))}
        l4 = p[40:]
        l4len = struct.unpack("!H", p[4:6])[0]
        while nh in (0, 43, 60, 44) and len(l4) >= 8:
            hl = 8 if nh == 44 else (l4[1] + 1) * 8
            nh = l4[0]
            l4, l4len = l4[hl:], l4len - hl
        pkt["proto"] = nh
    else:
        return None
    if pkt["proto"] == 6 and len(l4) >= 20:
        sport, dport, seq, ack, offb, flags, win, _ck, urp = struct.unpack("!HHIIBBHHH", l4[:20])
        doff = (offb >> 4) * 4
        pkt.update(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=win, urp=urp,
                   res=offb & 0x0F, doff=doff)
        if doff < 20:
            pkt["optbad"] = f"data offset {doff} < 20"
            pkt["plen"] = max(0, l4len - 20)
        else:
            opts = l4[20:doff]
            pkt["optbad"] = check_options(opts) if len(opts) == doff - 20 else None
            pkt["plen"] = max(0, l4len - doff)
    elif pkt["proto"] == 17 and len(l4) >= 8:
        pkt.update(sport=struct.unpack("!H", l4[0:2])[0], dport=struct.unpack("!H", l4[2:4])[0])
    return pkt


def facts(path, idle_secs=2.0):
    linktype, recs = read_pcap(path)
    out = collections.OrderedDict()
    out["packets"] = len(recs)
    out["bytes"] = os.path.getsize(path)
    if linktype != 1:
        out["error"] = f"linktype {linktype}"
        return out
    proto = collections.Counter()
    flagc = collections.Counter()
    ev = collections.Counter()
    examples = {}
    conns = collections.OrderedDict()

    def note(rule, pkt, what):
        ev[rule] += 1
        if rule not in examples:
            examples[rule] = f"{pkt['src']}:{pkt.get('sport')} > {pkt['dst']}:{pkt.get('dport')} {what}"

    for ts, frame in recs:
        pkt = parse(frame)
        if pkt is None:
            proto["other"] += 1
            continue
        name = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}.get(pkt["proto"], "ip-other")
        proto[f"{name}{pkt['v'] if name in ('tcp', 'udp') else ''}"] += 1
        if pkt["proto"] != 6 or "flags" not in pkt:
            continue
        f = pkt["flags"]
        flagc[flag_name(f)] += 1
        if pkt["res"]:
            note("reserved_bits", pkt, f"reserved header bits 0x{pkt['res']:x}")
        if f & URG and pkt["urp"] == 0:
            note("urg_without_pointer", pkt, f"[{flag_name(f)}] urp 0")
        if not f & URG and pkt["urp"]:
            note("pointer_without_urg", pkt, f"[{flag_name(f)}] urp {pkt['urp']}")
        if pkt["optbad"]:
            note("bad_tcp_option", pkt, pkt["optbad"])
        if pkt["src"] == pkt["dst"] and pkt["sport"] == pkt["dport"]:
            note("land", pkt, f"[{flag_name(f)}] source = destination")
        if f & URG and pkt["dport"] == 139:
            note("winnuke", pkt, f"[{flag_name(f)}] urp {pkt['urp']}")
        a = (pkt["src"], pkt["sport"], pkt["dst"], pkt["dport"])
        b = (pkt["dst"], pkt["dport"], pkt["src"], pkt["sport"])
        key = a if a in conns else b if b in conns else None
        if key is None or (f & SYN and not f & ACK and conns[key]["closed"]):
            key = a  # new connection (or a new SYN on a closed 4-tuple)
            conns.pop(key, None)
            conns[key] = {"pk": [], "closed": False, "first": ts}
        c = conns[key]
        d = 0 if (pkt["src"], pkt["sport"]) == (key[0], key[1]) else 1
        c["pk"].append((ts, d, f, pkt["plen"], pkt["win"], pkt["ack"]))
        if f & RST:
            c["closed"] = True
    end_ts = recs[-1][0] if recs else 0

    # ECE/CWR outside ECN negotiation (the NFR seed counts these two bits as reserved)
    # and per-connection behaviour
    syn_to = collections.defaultdict(lambda: {"syn": 0, "src": set(), "no_ack": 0})
    ports_by = collections.defaultdict(set)
    pattern = collections.Counter()
    unused = 0
    zw_max = zw_conns = 0
    storm_max = 0
    for key, c in conns.items():
        pk = c["pk"]
        seq = [(d, f & 0x3F) for _, d, f, _, _, _ in pk]
        ecn_ok = bool(pk[0][2] & SYN and pk[0][2] & ECE and pk[0][2] & CWR)
        for _, d, f, _, _, _ in pk:
            if f & (ECE | CWR) and not f & SYN and not ecn_ok:
                ev["ecn_bits_outside_ecn"] += 1
        f1 = seq[0][1]
        reply = [f for d, f in seq if d == 1]
        orig = [f for d, f in seq if d == 0]
        r1 = reply[0] if reply else None
        if seq[0][0] == 0:
            ports_by[(key[0], key[2])].add(key[3])
        if f1 == (FIN | PSH | URG):
            pattern["xmas_scan"] += 1
        elif f1 == FIN:
            pattern["fin_scan"] += 1
        elif pk[0][2] == 0:
            pattern["null_scan"] += 1
        elif f1 == ACK and not pk[0][3] and r1 is not None and r1 & RST:
            pattern["ack_scan"] += 1
        elif f1 & (SYN | ACK | FIN | RST) == SYN:
            s = syn_to[(key[2], key[3])]
            s["syn"] += sum(1 for f in orig if f & (SYN | ACK | FIN | RST) == SYN)
            s["src"].add(key[0])
            if r1 is None:
                pattern["syn_no_answer"] += 1
            elif r1 & RST:
                pattern["half_open_closed"] += 1
            elif r1 & SYN and r1 & ACK:
                third = next((f for d, f in seq[1:] if d == 0 and not f & SYN), None)
                if third is None:
                    s["no_ack"] += 1
                    pattern["syn_synack_only"] += 1
                elif third & (RST | FIN) and not third & PSH and not any(p[3] for p in pk):
                    pattern["half_open_open"] += 1
                elif third & ACK:
                    data = sum(p[3] for p in pk)
                    later = pk[3:]
                    gap = (later[0][0] if later else end_ts) - pk[2][0]
                    if data == 0 and gap >= idle_secs:
                        unused += 1
        # zero window: runs of window-0 segments from one side (not SYN, not RST)
        run = [0, 0]
        hit = False
        for _, d, f, plen, win, _ in pk:
            if win == 0 and not f & (SYN | RST):
                run[d] += 1
                zw_max = max(zw_max, run[d])
                hit = True
            elif not f & RST:
                run[d] = 0
        zw_conns += hit
        # ACK storm: in both directions, runs of pure ACKs repeating the same ack number
        best = [0, 0]
        last = [None, None]
        cur = [0, 0]
        for _, d, f, plen, win, ack in pk:
            if f & 0x3F == ACK and plen == 0:
                cur[d] = cur[d] + 1 if last[d] == ack else 1
                last[d] = ack
                best[d] = max(best[d], cur[d])
            else:
                cur[d], last[d] = 0, None
        storm_max = max(storm_max, min(best))
    for k, v in pattern.items():
        ev[k] = v
    if unused:
        ev["unused_connection"] = unused
    if zw_conns:
        ev["zero_window"] = zw_max
        out["zero_window_connections"] = zw_conns
    ev["ack_storm"] = storm_max if storm_max > 1 else 0
    if syn_to:
        (dst, port), s = max(syn_to.items(), key=lambda kv: kv[1]["syn"])
        out["max_syns_to_one_port"] = {"dst": dst, "port": port, "syns": s["syn"],
                                       "sources": len(s["src"]), "never_acked": s["no_ack"]}
        if s["syn"] >= 100 and len(s["src"]) >= 10:
            ev["syn_flood"] = s["syn"]
    if ports_by:
        (src, dst), ports = max(ports_by.items(), key=lambda kv: len(kv[1]))
        out["max_ports_one_pair"] = {"src": src, "dst": dst, "ports": len(ports)}
        if len(ports) >= 10:
            ev["port_scan"] = len(ports)
    out["protocols"] = dict(sorted(proto.items()))
    out["tcp_flags"] = dict(flagc.most_common())
    out["tcp_connections"] = len(conns)
    out["evidence"] = {k: v for k, v in sorted(ev.items()) if v}
    out["examples"] = dict(sorted(examples.items()))
    return out


# Thresholds used only to check that a declared rule really is in its capture.
EVIDENCE_MIN = {"port_scan": 50, "syn_flood": 500, "unused_connection": 10,
                "zero_window": 2, "ack_storm": 5}

CATEGORY = {
    "reserved_bits": "tcp_anomaly", "urg_without_pointer": "tcp_anomaly",
    "pointer_without_urg": "tcp_anomaly", "bad_tcp_option": "tcp_anomaly",
    "land": "dos", "winnuke": "dos", "syn_flood": "dos", "unused_connection": "dos",
    "ack_storm": "dos", "zero_window": "dos",
    "xmas_scan": "scan", "fin_scan": "scan", "null_scan": "scan", "ack_scan": "scan",
    "half_open_closed": "scan", "half_open_open": "scan", "syn_no_answer": "scan",
    "port_scan": "scan",
}


def evidence_for(rule, fx):
    ev = fx.get("evidence", {})
    if rule == "reserved_bits":
        return ev.get("reserved_bits", 0) + ev.get("ecn_bits_outside_ecn", 0)
    return ev.get(rule, 0)


def record(meta, kv):
    d = {}
    for item in kv:
        k, _, v = item.partition("=")
        d[k] = v
    with open(meta, "a") as f:
        f.write(json.dumps(d) + "\n")
    return 0


def truth(meta, outdir):
    scen = [json.loads(l) for l in open(meta) if l.strip()]
    tools = {}
    tpath = os.path.join(os.path.dirname(meta), "tools.json")
    if os.path.exists(tpath):
        tools = json.load(open(tpath))
    doc = collections.OrderedDict()
    doc["format"] = "tunnelwatch-lab-truth/1"
    doc["generated_by"] = "tests/lab/run.sh"
    doc["generated_at"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc["categories"] = ["scan", "dos", "tcp_anomaly"]
    doc["rule_category"] = CATEGORY
    doc["tools"] = tools
    doc["scenarios"] = []
    problems = []
    for s in scen:
        pcap = os.path.join(outdir, s["pcap"])
        fx = facts(pcap) if os.path.exists(pcap) else {"packets": 0, "bytes": 0}
        rules = s.get("expect_rules", "").split()
        inc = s.get("incidental_rules", "").split()
        for r in rules + inc:
            if r not in CATEGORY:
                problems.append(f"{s['name']}: unknown rule {r}")
                continue
            got = evidence_for(r, fx)
            need = EVIDENCE_MIN.get(r, 1) if r in rules else 1
            if got < need:
                problems.append(f"{s['name']}: declared {r} but the capture shows {got} (< {need})")
        if s["kind"] == "benign":
            for r in ("reserved_bits", "urg_without_pointer", "pointer_without_urg",
                      "bad_tcp_option", "land", "winnuke", "xmas_scan", "fin_scan",
                      "null_scan", "zero_window", "unused_connection", "syn_no_answer"):
                if evidence_for(r, fx):
                    problems.append(f"{s['name']}: benign capture shows {r}")
        if fx["packets"] == 0:
            problems.append(f"{s['name']}: nothing captured")
        entry = collections.OrderedDict()
        entry["name"] = s["name"]
        entry["pcap"] = s["pcap"]
        entry["kind"] = s["kind"]
        entry["tool"] = s["tool"]
        entry["command"] = s["command"]
        entry["netns"] = s["netns"]
        entry["attacker"] = s["attacker"].split(",") if s.get("attacker") else []
        entry["victim"] = s["victim"].split(",") if s.get("victim") else []
        entry["expect"] = sorted({CATEGORY[r] for r in rules if r in CATEGORY},
                                 key=["scan", "dos", "tcp_anomaly"].index)
        entry["expect_rules"] = rules
        entry["incidental_rules"] = inc
        entry["description"] = s.get("description", "")
        entry["observed"] = fx
        doc["scenarios"].append(entry)
    with open(os.path.join(outdir, "truth.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"{'scenario':<22} {'kind':<7} {'packets':>7} {'bytes':>8}  expect")
    total = 0
    for e in doc["scenarios"]:
        o = e["observed"]
        total += o["bytes"]
        print(f"{e['name']:<22} {e['kind']:<7} {o['packets']:>7} {o['bytes']:>8}  "
              f"{','.join(e['expect']) or '-'}  {' '.join(e['expect_rules'])}")
    print(f"total capture size: {total} bytes in {len(doc['scenarios'])} captures")
    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    return 1 if problems else 0


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "serve":
        return serve(*args)
    if cmd == "wait-tcp":
        return wait_tcp(*args)
    if cmd == "idle":
        return idle(*args)
    if cmd == "zerowin":
        return zerowin(*args)
    if cmd == "bulk":
        return bulk(*args)
    if cmd == "oob":
        return oob(*args)
    if cmd == "hold":
        return hold(*args)
    if cmd == "record":
        return record(args[0], args[1:])
    if cmd == "facts":
        for p in args:
            print(json.dumps({"pcap": p, **facts(p)}, indent=1))
        return 0
    if cmd == "truth":
        return truth(*args)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
