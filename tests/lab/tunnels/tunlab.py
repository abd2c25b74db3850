#!/usr/bin/env python3
"""Helpers for the tunnelwatch tunnel lab (driven by run.sh; standard library only).

Sub-commands
  serve-web WWW CERT KEY ADDR..   outside web server: HTTP :80, HTTPS :443 and :8443 on
                                  each ADDR (GET/HEAD static files and /api/*, POST/PUT
                                  read the body and answer 201)
  operator ADDR PORT MODE SEED SET  attacker's listener of a reverse shell: accept one
                                  connection and type the command set SET (MODE line:
                                  a whole line leaves on Enter, as from `nc -l` in a
                                  cooked terminal; MODE char: one keystroke per send,
                                  as from a raw terminal to a pty shell)
  type SEED SET -- CMD...         run CMD (e.g. `ssh -tt ...`) on a pseudo-terminal and
                                  type the command set SET one key at a time
  periodic URL N MEAN LO HI SEED [curl args..]  curl URL N times; gap = MEAN + U(LO, HI)
  burst N LO HI SEED URL.. -- [curl args..]      curl the URLs round-robin N times with
                                  irregular gaps U(LO, HI)
  rawhttp HOST PORT WHAT          hand-written HTTP: WHAT = nohost | exotic | respfirst
  respserver ADDR PORT N          server of `respfirst`: answers without requests
  trim IN OUT KEEP                copy a pcap, cutting TCP payload after the first KEEP
                                  bytes of each direction of each connection
  facts PCAP                      print the facts found in a capture (JSON)
  record META key=value..         append one scenario description (JSON line) to META
  truth META OUTDIR               write OUTDIR/truth.json from META and the captures and
                                  check that every declared rule has evidence
"""
import bisect
import collections
import datetime
import ipaddress
import json
import math
import os
import random
import re
import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

# ----------------------------------------------------------------------------
# command sets typed by the "person" (read-only commands; they run as root in the
# lab's namespaces on this machine)
COMMANDS = {
    "recon": ["id", "whoami", "hostname", "uname -a", "pwd", "ls /usr", "ps", "ip -br a",
              "df -h /", "date", "w", "ls /etc | wc -l"],
    "short": ["id", "uname -r", "pwd", "ls /usr", "date", "who"],
    "line8": ["id", "hostname", "uname -a", "pwd", "ls /usr", "ps", "ip -br a", "df -h /"],
}
TYPE_GAP = (0.15, 0.40)    # between two keystrokes
THINK = (0.4, 1.0)         # between the end of one output and the first key of the next


# ----------------------------------------------------------------------------
# services

def serve_web(www, cert, key, *addrs):
    import functools
    import ssl
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Handler(SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "lab-httpd/1.0"
        sys_version = ""

        def log_message(self, *a):
            pass

        def handle(self):
            try:
                super().handle()
            except (ConnectionError, OSError, ssl.SSLError):
                pass

        def _small(self, code, body, ctype="application/json"):
            b = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(b)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b)

        def do_GET(self):
            if self.path.startswith("/api/"):
                return self._small(200, '{"status":"ok","tasks":[]}')
            return super().do_GET()

        def _upload(self):
            n = int(self.headers.get("Content-Length") or 0)
            got = 0
            while got < n:
                b = self.rfile.read(min(65536, n - got))
                if not b:
                    break
                got += len(b)
            self._small(201, json.dumps({"received": got}))

        do_POST = _upload
        do_PUT = _upload

    handler = functools.partial(Handler, directory=www)

    class V4(ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True

    class V6(V4):
        address_family = socket.AF_INET6

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    servers = []
    for a in addrs:
        cls = V6 if ":" in a else V4
        servers.append(cls((a, 80), handler))
        for port in (443, 8443):
            s = cls((a, port), handler)
            s.socket = ctx.wrap_socket(s.socket, server_side=True)
            servers.append(s)
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("serving", " ".join(f"{s.server_address[0]}:{s.server_address[1]}" for s in servers),
          flush=True)
    while True:
        time.sleep(3600)


def respserver(addr, port, n):
    """Port-80 server that sends HTTP responses nobody asked for."""
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, int(port)))
    ls.listen(8)
    ls.settimeout(30)
    print("listening", flush=True)

    def resp(i):
        body = f"<html><body>update {i}</body></html>\n".encode()
        return (b"HTTP/1.1 200 OK\r\nServer: lab-httpd/1.0\r\nContent-Type: text/html\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    for _ in range(int(n)):
        try:
            c, _a = ls.accept()
        except socket.timeout:
            break
        c.settimeout(5)
        try:
            first = b""
            r, _, _ = select.select([c], [], [], 0.5)
            if r:
                first = c.recv(4096)
            if not first:
                # server-first: two responses pushed to a client that sent nothing
                c.sendall(resp(1))
                time.sleep(0.3)
                c.sendall(resp(2))
            elif first.startswith(b"HTTP/"):
                # the client itself sent a response: answer with one too
                c.sendall(resp(3))
            else:
                # one request, three responses
                for i in range(3):
                    c.sendall(resp(10 + i))
                    time.sleep(0.2)
            time.sleep(0.3)
        except OSError:
            pass
        c.close()
    ls.close()
    return 0


# ----------------------------------------------------------------------------
# typing drivers

class _Io:
    def __init__(self, rfd, write, log):
        self.rfd, self._write, self.log = rfd, write, log
        self.eof = False
        self.got = 0

    def write(self, b):
        self._write(b)

    def pump(self, secs):
        """Read (and log) whatever arrives during secs seconds."""
        end = time.monotonic() + secs
        while not self.eof:
            left = end - time.monotonic()
            if left <= 0:
                return
            r, _, _ = select.select([self.rfd], [], [], left)
            if r:
                self._read()

    def _read(self):
        try:
            b = os.read(self.rfd, 65536) if isinstance(self.rfd, int) else self.rfd.recv(65536)
        except OSError:
            b = b""
        if not b:
            self.eof = True
            return
        self.got += len(b)
        self.log.write(b.decode("utf-8", "replace"))
        self.log.flush()

    def idle(self, quiet, most):
        """Wait until nothing arrived for `quiet` seconds (at most `most` seconds)."""
        end = time.monotonic() + most
        last = time.monotonic()
        while not self.eof and time.monotonic() < end:
            r, _, _ = select.select([self.rfd], [], [], 0.05)
            if r:
                self._read()
                last = time.monotonic()
            elif time.monotonic() - last >= quiet:
                return


def _drive(io, cmds, mode, rng, enter):
    io.idle(0.8, 10)                      # banner, prompt
    t0 = time.monotonic()
    keys = 0
    for cmd in cmds + ["exit"]:
        if io.eof:
            break
        io.pump(rng.uniform(*THINK))
        if mode == "char":
            for ch in cmd:
                io.write(ch.encode())
                keys += 1
                io.pump(rng.uniform(*TYPE_GAP))
            io.write(enter)
            keys += 1
        else:
            # typed into a cooked terminal: the line leaves as a whole on Enter
            io.pump(sum(rng.uniform(*TYPE_GAP) for _ in cmd))
            io.write(cmd.encode() + enter)
            keys += len(cmd) + 1
        io.idle(0.4, 6)
    io.idle(0.5, 5)
    print(f"\n[driver] {len(cmds)} commands + exit, {keys} keys in {time.monotonic() - t0:.1f}s, "
          f"{io.got} bytes received", file=sys.stderr, flush=True)


def operator(addr, port, mode, seed, cmdset):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, int(port)))
    ls.listen(1)
    ls.settimeout(40)
    print("listening", flush=True)
    c, peer = ls.accept()
    ls.close()
    print(f"connection from {peer[0]}:{peer[1]}", flush=True)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    io = _Io(c, c.sendall, sys.stdout)
    _drive(io, list(COMMANDS[cmdset]), mode, random.Random(seed),
           b"\r" if mode == "char" else b"\n")
    c.close()
    return 0


def type_(seed, cmdset, argv):
    import pty
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(argv[0], argv)
    io = _Io(fd, lambda b: os.write(fd, b), sys.stdout)
    try:
        _drive(io, list(COMMANDS[cmdset]), "char", random.Random(seed), b"\r")
    finally:
        for _ in range(50):
            p, st = os.waitpid(pid, os.WNOHANG)
            if p:
                return os.waitstatus_to_exitcode(st)
            time.sleep(0.1)
        os.kill(pid, 15)
        os.waitpid(pid, 0)
    return 1


# ----------------------------------------------------------------------------
# HTTP clients

def _curl(url, extra):
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", "--max-time", "5", *extra, url]).returncode


def periodic(url, n, mean, lo, hi, seed, *extra):
    rng = random.Random(seed)
    n, mean, lo, hi = int(n), float(mean), float(lo), float(hi)
    t = time.monotonic()
    fails = 0
    for i in range(n):
        fails += _curl(url, extra) != 0
        if i + 1 < n:
            t += mean + rng.uniform(lo, hi)
            time.sleep(max(0.0, t - time.monotonic()))
    print(f"periodic: {n} requests, {fails} failed", flush=True)
    return 1 if fails else 0


def burst(args):
    n, lo, hi, seed = int(args[0]), float(args[1]), float(args[2]), args[3]
    rest = args[4:]
    urls = rest[:rest.index("--")] if "--" in rest else rest
    extra = rest[rest.index("--") + 1:] if "--" in rest else []
    rng = random.Random(seed)
    fails = 0
    for i in range(n):
        fails += _curl(urls[i % len(urls)], extra) != 0
        time.sleep(rng.uniform(lo, hi))
    print(f"burst: {n} requests to {len(urls)} URLs, {fails} failed", flush=True)
    return 1 if fails else 0


def _exchange(host, port, data, wait=1.0):
    s = socket.create_connection((host, int(port)), timeout=5)
    if data:
        s.sendall(data)
    got = b""
    end = time.monotonic() + wait + 2
    s.settimeout(wait)
    while time.monotonic() < end:
        try:
            b = s.recv(65536)
        except socket.timeout:
            break
        if not b:
            break
        got += b
    s.close()
    return got


def rawhttp(host, port, what):
    if what == "nohost":
        # HTTP/1.1 requests without the mandatory Host header (RFC 9112 3.2)
        reqs = [f"GET {p} HTTP/1.1\r\nUser-Agent: lab-agent/0.1\r\nAccept: */*\r\n"
                "Connection: close\r\n\r\n" for p in ("/index.html", "/page2.html", "/api/v1/status")]
    elif what == "exotic":
        reqs = [f"{m} {p} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lab-agent/0.1\r\n"
                "Connection: close\r\n\r\n"
                for m, p in (("BREW", "/pot-0"), ("XYZZY", "/"), ("DEBUG", "/default.aspx"),
                             ("TRACK", "/"))]
    elif what == "respfirst":
        # 1: connect and say nothing (the server pushes responses); 2: one request,
        # three responses; 3: the client sends a response itself
        body = b"<html><body>report</body></html>\n"
        reqs = [None,
                f"GET /news HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
                (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                 + str(len(body)).encode() + b"\r\n\r\n" + body)]
    else:
        print(f"unknown: {what}", file=sys.stderr)
        return 2
    for r in reqs:
        data = r.encode() if isinstance(r, str) else r
        got = _exchange(host, port, data, wait=1.5 if r is None else 1.0)
        print(repr((data or b"")[:40]), "->", repr(got[:60]), flush=True)
        time.sleep(0.3)
    return 0


# ----------------------------------------------------------------------------
# pcap reading and trimming

def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return 1, [], data[:24]
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
        recs.append((sec + frac / (1e9 if nano else 1e6), data[off + 16:off + 16 + incl],
                     orig, data[off:off + 16], e))
        off += 16 + incl
    return linktype, recs, data[:24]


def _l4(frame):
    """Ethernet frame -> (version, src, dst, proto, l4 bytes, l4 offset in frame) or None."""
    if len(frame) < 14:
        return None
    et = struct.unpack("!H", frame[12:14])[0]
    p = frame[14:]
    if et == 0x0800 and len(p) >= 20:
        ihl = (p[0] & 15) * 4
        tot = struct.unpack("!H", p[2:4])[0]
        if struct.unpack("!H", p[6:8])[0] & 0x1FFF:
            return None
        return (4, str(ipaddress.IPv4Address(p[12:16])), str(ipaddress.IPv4Address(p[16:20])),
                p[9], p[ihl:tot], 14 + ihl, tot - ihl)
    if et == 0x86DD and len(p) >= 40:
        nh = p[6]
        plen = struct.unpack("!H", p[4:6])[0]
        l4, off = p[40:40 + plen], 54
        while nh in (0, 43, 60) and len(l4) >= 8:
            hl = (l4[1] + 1) * 8
            nh = l4[0]
            l4, off, plen = l4[hl:], off + hl, plen - hl
        return (6, str(ipaddress.IPv6Address(p[8:24])), str(ipaddress.IPv6Address(p[24:40])),
                nh, l4, off, plen)
    return None


def trim(src, dst, keep):
    keep = int(keep)
    linktype, recs, hdr = read_pcap(src)
    seen = collections.Counter()
    cut = 0
    with open(dst + ".tmp", "wb") as f:
        f.write(hdr)
        for ts, frame, orig, rh, e in recs:
            p = _l4(frame) if linktype == 1 else None
            if p and p[3] == 6 and len(p[4]) >= 20:
                v, src_, dst_, _, l4, off, l4len = p
                sport, dport = struct.unpack("!HH", l4[:4])
                doff = (l4[12] >> 4) * 4
                plen = max(0, l4len - doff)
                k = (src_, sport, dst_, dport)
                if plen and seen[k] >= keep:
                    newlen = off + doff
                    if newlen < len(frame):
                        frame = frame[:newlen]
                        cut += 1
                seen[k] += plen
            sec, frac, _incl, orig_ = struct.unpack(e + "IIII", rh)
            f.write(struct.pack(e + "IIII", sec, frac, len(frame), orig_))
            f.write(frame)
    os.replace(dst + ".tmp", dst)
    print(f"trim: {len(recs)} packets, payload cut from {cut}", flush=True)
    return 0


# ----------------------------------------------------------------------------
# capture facts

METHODS = {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH"}
REQ_RE = re.compile(rb"([A-Z][A-Z0-9_-]{1,15}) (\S{1,2048}) HTTP/(1\.[01])\r?\n")  # used with .match(): anchored at the offset
RESP_RE = re.compile(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r?\n")
HTTP_PORTS = {80, 8080, 8000, 8888, 3128}
TLS_PORTS = {443, 8443}
SHELL_CMD = re.compile(rb"(?m)^(id|whoami|hostname|uname -a|uname -r|pwd|ls[^\n\r]*|ps[^\n\r]*|"
                       rb"ip -br a|df -h /|cat /etc/[^\n\r]*|date|who|w|exit)\r?$")
SMALL = 100          # payload bytes: "small" packet for keystroke statistics


def _stats(xs, nd=4):
    if not xs:
        return None
    s = sorted(xs)

    def q(p):
        return s[min(len(s) - 1, int(p * (len(s) - 1) + 0.5))]
    out = {"n": len(s), "min": round(s[0], nd), "p10": round(q(0.1), nd),
           "median": round(statistics.median(s), nd), "mean": round(statistics.fmean(s), nd),
           "p90": round(q(0.9), nd), "max": round(s[-1], nd)}
    if len(s) > 1:
        out["stdev"] = round(statistics.pstdev(s), nd)
        if out["mean"]:
            out["cv"] = round(statistics.pstdev(s) / statistics.fmean(s), 4)
    return out


class Stream:
    """One direction of a TCP connection: payload in sequence order (first copy wins)."""

    def __init__(self):
        self.buf = bytearray()
        self.offs = []      # (offset, ts) of each appended segment
        self.next = None
        self.complete = True
        self.pk = []        # (ts, payload length on the wire)

    def add(self, ts, seq, data, plen):
        if plen:
            self.pk.append((ts, plen))
        if not plen or not self.complete:
            return
        if self.next is None:
            self.next = seq
        d = (seq - self.next) & 0xFFFFFFFF
        if d >= 0x80000000:        # (partly) old data
            skip = (self.next - seq) & 0xFFFFFFFF
            if skip >= plen:
                return
            data, plen, seq = data[skip:], plen - skip, self.next
            d = 0
        if d:                      # a hole: stop, stream no longer contiguous
            self.complete = False
            return
        if len(data) < plen:       # payload cut by snaplen/trim
            self.offs.append((len(self.buf), ts))
            self.buf += data
            self.complete = False
            return
        self.offs.append((len(self.buf), ts))
        self.buf += data
        self.next = (seq + plen) & 0xFFFFFFFF

    def ts_at(self, off):
        i = bisect.bisect_right(self.offs, (off, float("inf"))) - 1
        return self.offs[max(i, 0)][1] if self.offs else None


def _headers(block):
    h = {}
    for line in block.split(b"\r\n")[1:]:
        k, sep, v = line.partition(b":")
        if sep:
            h[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return h


def _http_msgs(st, requests):
    """Parse HTTP messages from the start of a stream. Stops at the first non-HTTP byte
    or after CONNECT. Returns (messages, end offset, stopped_reason)."""
    buf = bytes(st.buf)
    off = 0
    out = []
    while off < len(buf):
        m = (REQ_RE if requests else RESP_RE).match(buf, off)
        if not m:
            return out, off, "other"
        end = buf.find(b"\r\n\r\n", off)
        if end < 0:
            out.append({"start": off, "line": buf[off:m.end()].strip(), "partial": True})
            return out, len(buf), "partial"
        hdr = _headers(buf[off:end])
        msg = {"start": off, "ts": st.ts_at(off), "line": buf[off:m.end()].strip(), "h": hdr}
        if requests:
            msg.update(method=m.group(1).decode(), target=m.group(2).decode("latin-1"),
                       version=m.group(3).decode())
        else:
            msg["status"] = int(m.group(1))
        body = end + 4
        out.append(msg)
        if requests and msg["method"] == "CONNECT":
            return out, body, "connect"
        if hdr.get("transfer-encoding", "").lower() == "chunked":
            p = body
            while True:
                nl = buf.find(b"\r\n", p)
                if nl < 0:
                    return out, len(buf), "partial"
                try:
                    n = int(buf[p:nl].split(b";")[0], 16)
                except ValueError:
                    return out, p, "other"
                p = nl + 2 + n + 2
                if n == 0:
                    break
            off = p
        else:
            try:
                cl = int(hdr.get("content-length", "0"))
            except ValueError:
                cl = 0
            msg["content_length"] = cl
            off = body + cl
            if off > len(buf):
                return out, len(buf), "body"
    return out, off, "end"


def _proto_of(b):
    if not b:
        return "none"
    if b[:1] == b"\x16" and b[1:2] == b"\x03":
        return "tls"
    if b.startswith(b"SSH-"):
        return "ssh"
    if REQ_RE.match(b) or RESP_RE.match(b):
        return "http"
    return "other"


def _printable(b, n=60):
    return "".join(chr(c) if 32 <= c < 127 else "." for c in b[:n])


def _interactive(pk, ident):
    """Keystroke statistics for one direction: packets of at most SMALL bytes."""
    small = [(t, n) for t, n in pk if n <= SMALL]
    if len(small) < 10:
        return None
    gaps = [b[0] - a[0] for a, b in zip(small, small[1:])]
    sizes = collections.Counter(n for _, n in small)
    typing = [g for g in gaps if 0.1 <= g <= 0.5]
    # ON periods (Zhang & Paxson): sending resumed after 0.5 s of silence.
    onsets = [t for i, (t, _) in enumerate(pk) if i == 0 or t - pk[i - 1][0] >= 0.5]
    return {"dir": ident, "payload_packets": len(pk), "small_packets": len(small),
            "onsets": len(onsets), "_onsets": onsets,
            "small_sizes": {str(k): v for k, v in sizes.most_common(6)},
            "gap_s": _stats(gaps), "gaps_in_150_400ms_pct": round(
                100 * sum(1 for g in gaps if 0.15 <= g <= 0.40) / len(gaps), 1),
            "gaps_in_100_500ms": len(typing),
            "first_gaps_ms": [round(g * 1000) for g in gaps[:25]]}


def _is_keystrokes(ia):
    return bool(ia and ia["small_packets"] >= 20 and ia["gaps_in_100_500ms"] >= 15
                and ia["small_packets"] >= 0.5 * ia["payload_packets"])


def _dns(l4, udp_payload_off=8):
    d = l4[udp_payload_off:]
    if len(d) < 12:
        return None
    tid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", d[:12])
    off = 12
    labels = []
    while off < len(d):
        ln = d[off]
        if ln == 0:
            off += 1
            break
        if ln & 0xC0:
            return None
        labels.append(d[off + 1:off + 1 + ln])
        off += 1 + ln
    if qd < 1 or off + 4 > len(d):
        return None
    qtype = struct.unpack("!H", d[off:off + 2])[0]
    return {"qr": flags >> 15, "rcode": flags & 15, "an": an, "labels": labels, "qtype": qtype,
            "size": len(d)}


QTYPES = {1: "A", 2: "NS", 5: "CNAME", 10: "NULL", 15: "MX", 16: "TXT", 28: "AAAA",
          33: "SRV", 41: "OPT", 255: "ANY", 6: "SOA", 12: "PTR"}


def _entropy(b):
    if not b:
        return 0.0
    c = collections.Counter(b)
    return -sum(v / len(b) * math.log2(v / len(b)) for v in c.values())


def _ping_pattern(data):
    """iputils ping: 16-byte timeval, then bytes 0x10, 0x11, ... (i & 0xff)."""
    if len(data) < 17:
        return len(data) in (0, 8, 16)
    return all(data[i] == (i & 0xFF) for i in range(16, len(data)))


def facts(path):
    linktype, recs, _ = read_pcap(path)
    out = collections.OrderedDict()
    out["packets"] = len(recs)
    out["bytes"] = os.path.getsize(path)
    if not recs:
        return out
    out["duration_s"] = round(recs[-1][0] - recs[0][0], 3)
    if linktype != 1:
        out["error"] = f"linktype {linktype}"
        return out
    proto = collections.Counter()
    conns = collections.OrderedDict()
    truncated = 0
    dnsq = []
    dnsr = []
    icmp = []
    for ts, frame, orig, _rh, _e in recs:
        if len(frame) < orig:
            truncated += 1
        p = _l4(frame)
        if p is None:
            proto["other"] += 1
            continue
        v, src, dst, pr, l4, _off, l4len = p
        name = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}.get(pr, "ip-other")
        proto[f"{name}{v if name in ('tcp', 'udp') else ''}"] += 1
        if pr == 6 and len(l4) >= 20:
            sport, dport, seq, ack, offb, flags = struct.unpack("!HHIIBB", l4[:14])
            doff = (offb >> 4) * 4
            plen = max(0, l4len - doff)
            a, b = (src, sport, dst, dport), (dst, dport, src, sport)
            key = a if a in conns else b if b in conns else None
            if key is None or (flags & 0x12 == 0x02 and conns[key]["fin"] and key == a):
                key = a
                conns.pop(key, None)
                conns[key] = {"c2s": Stream(), "s2c": Stream(), "first": ts, "last": ts,
                              "fin": False, "syn": bool(flags & 0x02 and not flags & 0x10)}
            c = conns[key]
            c["last"] = ts
            d = "c2s" if (src, sport) == key[:2] else "s2c"
            c[d].add(ts, seq, l4[doff:doff + plen], plen)
            if flags & 0x05:
                c["fin"] = True
        elif pr == 17 and len(l4) >= 8:
            sport, dport = struct.unpack("!HH", l4[:4])
            if 53 in (sport, dport):
                q = _dns(l4)
                if q:
                    q.update(ts=ts, src=src, dst=dst)
                    (dnsr if q["qr"] else dnsq).append(q)
        elif pr in (1, 58) and len(l4) >= 8:
            t = l4[0]
            if (pr == 1 and t in (0, 8)) or (pr == 58 and t in (128, 129)):
                icmp.append({"ts": ts, "src": src, "dst": dst, "req": t in (8, 128),
                             "data": bytes(l4[8:]), "len": l4len - 8, "v": 4 if pr == 1 else 6})
    out["protocols"] = dict(sorted(proto.items()))
    out["payload_cut_packets"] = truncated
    ev = collections.Counter()

    # ---- TCP connections ---------------------------------------------------------
    flows = []
    http_req = []
    connects = []
    ssh_banners = []
    interactive = []
    shells = []
    tls_hellos = 0
    for key, c in conns.items():
        cs, sc = c["c2s"], c["s2c"]
        if not cs.pk and not sc.pk:
            continue
        client, cport, server, sport = key
        first_dir = None
        if cs.pk and (not sc.pk or cs.pk[0][0] <= sc.pk[0][0]):
            first_dir = "c2s"
        elif sc.pk:
            first_dir = "s2c"
        f = {"client": f"{client}:{cport}", "server": f"{server}:{sport}",
             "duration_s": round(c["last"] - c["first"], 3),
             "payload_packets": [len(cs.pk), len(sc.pk)],
             "payload_bytes": [sum(n for _, n in cs.pk), sum(n for _, n in sc.pk)],
             "first_talker": "client" if first_dir == "c2s" else "server",
             "first_c2s": _printable(bytes(cs.buf[:60])),
             "first_s2c": _printable(bytes(sc.buf[:60]))}
        reqs, rq_end, rq_stop = _http_msgs(cs, True)
        resps, _rs_end, _ = _http_msgs(sc, False)
        for r in reqs:
            if "method" not in r:
                continue
            host = r["h"].get("host")
            http_req.append({"ts": r["ts"], "client": client, "server": server, "port": sport,
                             "method": r["method"], "target": r["target"],
                             "version": r["version"], "host": host,
                             "content_length": r.get("content_length", 0)})
            if r["version"] == "1.1" and host is None:
                ev["http_without_host"] += 1
            if r["method"].encode() not in METHODS:
                ev["exotic_method"] += 1
            if r["method"] in ("POST", "PUT") and r.get("content_length", 0) >= 1_000_000:
                ev["upload_volume"] += 1
            if "crap=" in r["target"]:
                ev["signature"] += 1
                ev["sig_httptunnel"] += 1
        nreq = sum(1 for r in reqs if "method" in r)
        nresp = sum(1 for r in resps if "status" in r and r["status"] >= 200)
        f["http_requests"] = nreq
        f["http_responses"] = nresp
        if nresp > nreq or (first_dir == "s2c" and resps) or RESP_RE.match(bytes(cs.buf[:64])):
            ev["response_without_request"] += 1
            f["responses_without_requests"] = True
        # CONNECT: what flows through the tunnel after the proxy's answer
        if rq_stop == "connect":
            r = reqs[-1]
            tgt = r["target"]
            port = int(tgt.rsplit(":", 1)[1]) if ":" in tgt and tgt.rsplit(":", 1)[1].isdigit() else None
            status = resps[0]["status"] if resps and "status" in resps[0] else None
            rs_end = (sc.buf.find(b"\r\n\r\n") + 4) if status else 0
            up = bytes(cs.buf[rq_end:rq_end + 64])
            down = bytes(sc.buf[rs_end:rs_end + 64]) if status else b""
            t_up = cs.ts_at(rq_end) if len(cs.buf) > rq_end else None
            t_down = sc.ts_at(rs_end) if len(sc.buf) > rs_end else None
            if t_up is not None and (t_down is None or t_up <= t_down):
                first_in = ("client", up)
            elif t_down is not None:
                first_in = ("server", down)
            else:
                first_in = (None, b"")
            inner = _proto_of(first_in[1])
            connects.append({"target": tgt, "status": status, "tunnel_first_talker": first_in[0],
                             "tunnel_protocol": inner, "tunnel_first_bytes": _printable(first_in[1], 40)})
            if port is not None and port != 443:
                ev["connect_port_policy"] += 1
            if status == 200 and inner != "tls":
                ev["connect_without_tls"] += 1
        # protocols on ports
        whole_c = bytes(cs.buf)
        whole_s = bytes(sc.buf)
        first_bytes = whole_c[:4096] if first_dir == "c2s" else whole_s[:4096]
        fp = _proto_of(first_bytes)
        if fp == "tls" and first_dir == "c2s" and whole_c[5:6] == b"\x01":
            tls_hellos += 1
        if rq_stop == "connect" and connects[-1]["tunnel_protocol"] == "tls":
            tls_hellos += 1
        if sport in HTTP_PORTS and fp not in ("http",):
            ev["foreign_protocol_on_port"] += 1
            f["foreign_on_port"] = fp
        elif sport in TLS_PORTS and not (fp == "tls" and first_dir == "c2s"):
            ev["foreign_protocol_on_port"] += 1
            f["foreign_on_port"] = fp
        for d, whole in (("c2s", whole_c), ("s2c", whole_s)):
            i = whole.find(b"SSH-2.0-")
            if i >= 0:
                banner = whole[i:whole.find(b"\n", i) if whole.find(b"\n", i) > 0 else i + 60]
                ssh_banners.append({"flow": f"{client}:{cport}>{server}:{sport}", "dir": d,
                                    "offset": i, "banner": _printable(banner.strip(), 80)})
        has_ssh = b"SSH-2.0-" in whole_c or b"SSH-2.0-" in whole_s
        http_first = reqs and "method" in reqs[0]
        if has_ssh and (sport in HTTP_PORTS | TLS_PORTS or http_first):
            ev["ssh_in_http"] += 1
        if fp == "ssh" and sport != 22:
            ev["ssh_non_standard_port"] += 1
        # DNS over TCP: 2-byte length, message
        if sport == 53:
            for st, lst in ((cs, dnsq), (sc, dnsr)):
                b = bytes(st.buf)
                o = 0
                while o + 2 <= len(b):
                    ln = struct.unpack("!H", b[o:o + 2])[0]
                    q = _dns(b[o + 2:o + 2 + ln], 0)
                    if q:
                        q.update(ts=st.ts_at(o), src=client, dst=server, tcp=True)
                        lst.append(q)
                    o += 2 + ln
        # interactive timing
        ks = False
        for d, st in (("c2s", cs), ("s2c", sc)):
            ia = _interactive(st.pk, d)
            if ia:
                ia["flow"] = f"{client}:{cport}>{server}:{sport}"
                ia["keystroke_like"] = _is_keystrokes(ia)
                ks = ks or ia["keystroke_like"]
                interactive.append(ia)
        if ks:
            ev["keystrokes"] += 1
            if http_first or fp == "tls":
                ev["interactive_in_other_protocol"] += 1
        # a shell driven over the connection: command lines one way, their output back
        for d, cmds_from, out_from in (("s2c", whole_s, whole_c), ("c2s", whole_c, whole_s)):
            cmds = SHELL_CMD.findall(cmds_from.replace(b"\r", b"\n"))
            if len(cmds) >= 3 and b"uid=0(root)" in out_from:
                shells.append({"flow": f"{client}:{cport}>{server}:{sport}",
                               "commands_from": "server" if d == "s2c" else "client",
                               "commands": len(cmds)})
                ev["reverse_shell"] += 1
                break
        flows.append(f)
    out["tcp_connections"] = len(flows)
    flows.sort(key=lambda f: -(f["payload_bytes"][0] + f["payload_bytes"][1]))
    out["tcp_flows"] = flows[:6]
    if len(flows) > 6:
        out["tcp_flows_not_listed"] = len(flows) - 6
    out["tls_client_hellos"] = tls_hellos

    # ---- HTTP ---------------------------------------------------------------------
    if http_req:
        h = collections.OrderedDict()
        h["requests"] = len(http_req)
        h["methods"] = dict(collections.Counter(r["method"] for r in http_req).most_common())
        h["versions"] = dict(collections.Counter(r["version"] for r in http_req))
        h["without_host"] = sum(1 for r in http_req if r["host"] is None)
        up = [r for r in http_req if r["method"] in ("POST", "PUT")]
        if up:
            h["upload_content_lengths"] = [r["content_length"] for r in up]
        h["examples"] = sorted({f"{r['method']} {r['target'][:70]} HTTP/{r['version']}"
                                for r in http_req})[:8]
        groups = collections.defaultdict(list)
        for r in http_req:
            if r["method"] == "CONNECT":
                continue
            url = r["target"].split("?")[0]
            if url.startswith("/"):
                url = f"http://{r['host'] or r['server']}{url}"
            groups[(r["client"], url)].append(r["ts"])
        per = []
        beacon = 0
        for (cl, url), tss in groups.items():
            if len(tss) < 3:
                continue
            tss.sort()
            iv = [b - a for a, b in zip(tss, tss[1:])]
            st = _stats(iv)
            rate = (len(tss) - 1) / (tss[-1] - tss[0]) if tss[-1] > tss[0] else 0
            per.append({"client": cl, "url": url, "requests": len(tss),
                        "per_s": round(rate, 3), "interval_s": st,
                        "intervals_ms": [round(x * 1000) for x in iv[:25]]})
            if len(tss) >= 10 and (st.get("cv", 1) <= 0.15 or rate >= 1.0):
                beacon += 1
        if beacon:
            ev["beacon"] = beacon
        if per:
            per.sort(key=lambda x: -x["requests"])
            h["repeated_urls"] = per[:5]
        all_t = sorted(r["ts"] for r in http_req if r["method"] != "CONNECT")
        if len(all_t) >= 3:
            h["request_interval_s"] = _stats([b - a for a, b in zip(all_t, all_t[1:])])
        out["http"] = h
    if connects:
        out["connect"] = connects[:10]
    if ssh_banners:
        out["ssh_banners"] = ssh_banners[:8]
    # stepping stones: a typed session into a host and one out of it whose ON periods
    # start within 80 ms of each other (at least 4, and 60 % of the shorter session's)
    typed = [ia for ia in interactive if ia["keystroke_like"] and ia["dir"] == "c2s"]
    chains = []
    for a in typed:
        for b in typed:
            ca, sa = a["flow"].split(">")
            cb, sb = b["flow"].split(">")
            if a is b or sa.rsplit(":", 1)[0] != cb.rsplit(":", 1)[0] \
                    or ca.rsplit(":", 1)[0] == sb.rsplit(":", 1)[0]:
                continue
            used, m = set(), 0
            for x in a["_onsets"]:
                j = next((j for j, y in enumerate(b["_onsets"]) if j not in used and abs(y - x) <= 0.08), None)
                if j is not None:
                    used.add(j)
                    m += 1
            fewer = max(1, min(len(a["_onsets"]), len(b["_onsets"])))
            if m >= 4 and m >= 0.6 * fewer:
                chains.append({"into": a["flow"], "out_of": b["flow"], "matched_onsets": m,
                               "of": fewer})
    if chains:
        out["stepping_stones"] = chains
        ev["stepping_stone"] += len(chains)
    for ia in interactive:
        ia.pop("_onsets", None)
    if interactive:
        interactive.sort(key=lambda x: -x["small_packets"])
        out["interactive"] = interactive[:4]
    if shells:
        out["shell_sessions"] = shells

    # ---- DNS ----------------------------------------------------------------------
    if dnsq:
        d = collections.OrderedDict()
        d["queries"] = len(dnsq)
        d["responses"] = len(dnsr)
        d["qtypes"] = dict(collections.Counter(QTYPES.get(q["qtype"], str(q["qtype"]))
                                               for q in dnsq).most_common())
        names = [b".".join(q["labels"]) for q in dnsq]
        d["qname_len"] = _stats([len(n) for n in names], 1)
        d["longest_label"] = max((len(l) for q in dnsq for l in q["labels"]), default=0)
        d["distinct_names"] = len(set(names))
        d["query_size"] = _stats([q["size"] for q in dnsq], 1)
        if dnsr:
            d["response_size"] = _stats([q["size"] for q in dnsr], 1)
            d["rcodes"] = dict(collections.Counter(q["rcode"] for q in dnsr))
        t = [q["ts"] for q in dnsq]
        d["queries_per_s"] = round((len(t) - 1) / (t[-1] - t[0]), 2) if t[-1] > t[0] else None
        d["over_tcp"] = sum(1 for q in dnsq if q.get("tcp"))
        suffix = collections.defaultdict(list)
        for q in dnsq:
            # the zone: the last 3 labels of longer names (x.t.lab.test -> t.lab.test),
            # else the last 2 (www.lab.test -> lab.test)
            zl = 3 if len(q["labels"]) > 3 else 2
            q["zl"] = zl
            suffix[b".".join(q["labels"][-zl:]).decode("latin-1").lower()].append(q)
        zones = []
        for s, qs in sorted(suffix.items(), key=lambda kv: -len(kv[1])):
            sub = [b".".join(q["labels"][:-q["zl"]]) for q in qs]
            z = {"suffix": s, "queries": len(qs), "distinct": len(set(sub)),
                 "qname_len_mean": round(statistics.fmean(len(b".".join(q["labels"])) for q in qs), 1),
                 "subdomain_entropy_bits_per_char": round(statistics.fmean(_entropy(x) for x in sub), 2)
                 if sub else 0.0,
                 "qtypes": dict(collections.Counter(QTYPES.get(q["qtype"], str(q["qtype"]))
                                                    for q in qs).most_common(3))}
            zones.append(z)
            if len(qs) >= 30 and z["distinct"] >= 20 and z["qname_len_mean"] >= 40:
                ev["dns_tunnel"] += len(qs)
        d["by_suffix"] = zones[:5]
        d["examples"] = [n[:90].decode("ascii", "backslashreplace") for n in sorted(set(names), key=len)[-2:]]
        out["dns"] = d

    # ---- ICMP ---------------------------------------------------------------------
    if icmp:
        i = collections.OrderedDict()
        i["echo_requests"] = sum(1 for x in icmp if x["req"])
        i["echo_replies"] = sum(1 for x in icmp if not x["req"])
        i["payload_len"] = _stats([x["len"] for x in icmp], 1)
        i["payload_len_top"] = {str(k): v for k, v in
                                collections.Counter(x["len"] for x in icmp).most_common(6)}
        i["distinct_payload_lens"] = len({x["len"] for x in icmp})
        odd = [x for x in icmp if not _ping_pattern(x["data"])]
        i["non_ping_payloads"] = len(odd)
        magic = sum(1 for x in icmp if x["data"][:4] in (b"\xde\xad\xc0\xde", b"\xd5\x20\x08\x80"))
        i["ptunnel_magic"] = magic
        i["first_bytes"] = dict(collections.Counter(x["data"][:4].hex() for x in icmp).most_common(3))
        i["bytes_each_way"] = [sum(x["len"] for x in icmp if x["req"]),
                               sum(x["len"] for x in icmp if not x["req"])]
        if len(odd) >= 10:
            ev["icmp_tunnel"] = len(odd)
        if magic:
            ev["signature"] += magic
            ev["sig_ptunnel_magic"] = magic
        out["icmp"] = i
    out["evidence"] = {k: v for k, v in sorted(ev.items()) if v}
    return out


# ----------------------------------------------------------------------------
# truth

CATEGORIES = ["tunnel", "covert_channel", "beacon", "protocol_anomaly", "threshold"]
CATEGORY = {
    "connect_without_tls": "tunnel", "ssh_in_http": "tunnel", "signature": "tunnel",
    "interactive_in_other_protocol": "tunnel", "dns_tunnel": "tunnel", "icmp_tunnel": "tunnel",
    "keystrokes": "covert_channel", "reverse_shell": "covert_channel",
    "stepping_stone": "tunnel",
    "beacon": "beacon",
    # As docs/specs/detector.md files them: SSH or unknown bytes on a port that
    # promises something else is a tunnel; grammar and policy breaches are anomalies.
    "foreign_protocol_on_port": "tunnel", "ssh_non_standard_port": "tunnel",
    "connect_port_policy": "protocol_anomaly",
    "http_without_host": "protocol_anomaly", "exotic_method": "protocol_anomaly",
    "response_without_request": "protocol_anomaly",
    "upload_volume": "threshold",
}


def record(meta, kv):
    d = {}
    for item in kv:
        k, _, v = item.partition("=")
        d[k] = v
    with open(meta, "a") as f:
        f.write(json.dumps(d) + "\n")
    return 0


def _list(s):
    return [x for x in s.replace(",", " ").split() if x]


def truth(meta, outdir):
    scen = [json.loads(l) for l in open(meta) if l.strip()]
    order = os.environ.get("TW_ORDER", "").split()
    if order:
        scen.sort(key=lambda s: order.index(s["name"]) if s["name"] in order else len(order))
    tools = {}
    tpath = os.path.join(os.path.dirname(meta), "tools.json")
    if os.path.exists(tpath):
        tools = json.load(open(tpath))
    doc = collections.OrderedDict()
    doc["format"] = "tunnelwatch-lab-truth/1"
    doc["generated_by"] = "tests/lab/tunnels/run.sh"
    doc["generated_at"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc["categories"] = CATEGORIES
    doc["rule_category"] = CATEGORY
    doc["tools"] = tools
    doc["capture"] = {
        "sensor": "tcpdump on the inside host's switch port (twtun-sw: twp-in for 10.78.0.1, "
                  "twp-in2 for 10.78.0.5): all of that host's traffic, in front of the proxy",
        "snaplen": int(os.environ.get("TW_SNAP", "1514")),
        "payload_cut_after_bytes": int(os.environ.get("TW_KEEP", "16384")),
        "payload_cut": "TCP payload beyond the first payload_cut_after_bytes of each direction "
                       "of each connection is cut from the capture (caplen < len, as with a "
                       "snaplen); IP/TCP headers and original lengths stay",
    }
    doc["scenarios"] = []
    problems = []
    for s in scen:
        pcap = os.path.join(outdir, s["pcap"])
        fx = facts(pcap) if os.path.exists(pcap) else {"packets": 0, "bytes": 0, "evidence": {}}
        rules = _list(s.get("expect_rules", ""))
        inc = _list(s.get("incidental_rules", ""))
        ev = fx.get("evidence", {})
        for r in rules + inc:
            if r not in CATEGORY:
                problems.append(f"{s['name']}: unknown rule {r}")
            elif not ev.get(r):
                problems.append(f"{s['name']}: declared {r} but the capture shows no evidence")
        if s["kind"] == "benign":
            for r in CATEGORY:
                if ev.get(r) and r not in inc:
                    problems.append(f"{s['name']}: benign capture shows {r} ({ev[r]})")
        if fx["packets"] == 0:
            problems.append(f"{s['name']}: nothing captured")
        e = collections.OrderedDict()
        for k in ("name", "pcap", "kind", "tool", "command", "netns"):
            e[k] = s.get(k, "")
        e["client"] = _list(s.get("client", ""))
        e["server"] = _list(s.get("server", ""))
        if s.get("via"):
            e["via"] = _list(s["via"])
        if s.get("far_end"):
            e["far_end"] = _list(s["far_end"])
        if s.get("server_command"):
            e["server_netns"] = s.get("server_netns", "")
            e["server_command"] = s["server_command"]
        e["expect"] = [c for c in CATEGORIES if any(CATEGORY.get(r) == c for r in rules)]
        e["expect_rules"] = rules
        e["incidental_rules"] = inc
        e["description"] = s.get("description", "")
        e["observed"] = fx
        doc["scenarios"].append(e)
    with open(os.path.join(outdir, "truth.json.tmp"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(os.path.join(outdir, "truth.json.tmp"), os.path.join(outdir, "truth.json"))
    print(f"{'scenario':<26} {'kind':<7} {'packets':>7} {'bytes':>8}  expect_rules [evidence]")
    total = 0
    for e in doc["scenarios"]:
        o = e["observed"]
        total += o["bytes"]
        evs = " ".join(f"{k}={v}" for k, v in o.get("evidence", {}).items() if k in CATEGORY)
        print(f"{e['name']:<26} {e['kind']:<7} {o['packets']:>7} {o['bytes']:>8}  "
              f"{' '.join(e['expect_rules']) or '-'}  [{evs}]")
    print(f"total capture size: {total} bytes in {len(doc['scenarios'])} captures")
    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    return 1 if problems else 0


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "serve-web":
        return serve_web(*args)
    if cmd == "respserver":
        return respserver(*args)
    if cmd == "operator":
        return operator(*args)
    if cmd == "type":
        i = args.index("--")
        return type_(args[0], args[1], args[i + 1:])
    if cmd == "periodic":
        return periodic(*args)
    if cmd == "burst":
        return burst(args)
    if cmd == "rawhttp":
        return rawhttp(*args)
    if cmd == "trim":
        return trim(*args)
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
