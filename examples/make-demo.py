#!/usr/bin/env python3
"""Builds examples/demo.pcap from Zeek's public test traces (BSD-3-Clause, see
examples/README.md): the traces are concatenated in order with their timestamps
shifted so that each starts one second after the previous one ends. Packet bytes are
unchanged. Run from the repository root with ../shared beside it:

    python3 examples/make-demo.py ../shared/data/pcaps/zeek/Traces examples/demo.pcap
"""
import struct
import sys

TRACES = [
    "wikipedia.pcap",                         # HTTP and DNS from a browser
    "tls/client-certificate.pcap",            # TLS 1.3 with SNI, ALPN and JA3/JA4
    "ssh/single-conn.pcap",                   # an SSH session
    "tunnels/gre-sample.pcap",                # SSH, DNS, NTP and ICMP inside GRE
    "tunnels/Teredo.pcap",                    # IPv6 over UDP (Teredo)
]


def records(path):
    data = open(path, "rb").read()
    assert data[:4] == b"\xd4\xc3\xb2\xa1", f"{path}: expected a little-endian µs pcap"
    assert struct.unpack("<I", data[20:24])[0] == 1, f"{path}: expected Ethernet"
    off = 24
    while off + 16 <= len(data):
        sec, usec, caplen, origlen = struct.unpack("<IIII", data[off:off + 16])
        yield sec * 1_000_000 + usec, origlen, data[off + 16:off + 16 + caplen]
        off += 16 + caplen


def main(src, dst):
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    next_start = None
    for name in TRACES:
        recs = list(records(f"{src}/{name}"))
        first = recs[0][0]
        shift = 0 if next_start is None else next_start - first
        for t, origlen, pkt in recs:
            t += shift
            out.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(pkt), origlen))
            out.append(pkt)
        next_start = recs[-1][0] + shift + 1_000_000
    open(dst, "wb").write(b"".join(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
