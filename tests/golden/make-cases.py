#!/usr/bin/env python3
"""Creates the golden-case inputs from the shared Zeek traces (BSD-3-Clause, see
examples/LICENSE-zeek-traces.txt). Derived inputs (nanosecond, big-endian, gzip,
truncated copies) are made here so that their provenance is reproducible:

    python3 tests/golden/make-cases.py ../shared/data/pcaps/zeek/Traces

Expected outputs are then written by the runner: UPDATE_GOLDEN=1 cargo test --test golden
"""
import gzip
import os
import struct
import sys

CASES = {
    # case: (trace, options, what it checks)
    "http-get": ("http/get.pcap", "", "a plain HTTP/1.1 GET: handshake, data, FIN close (SF, ShADadFf), HTTP facts"),
    "gre-tunnel": ("tunnels/gre-sample.pcap", "", "GRE decapsulation, tunnel_parents, ICMP errors attributed to the quoted flow"),
    "missing-syn": ("tcp/missing-syn.pcap", "checksums=ignore", "a connection whose SYN was not captured: Zeek's flip heuristic (^)"),
    "vlan-mpls": ("mixed-vlan-mpls.pcap", "checksums=ignore", "802.1Q and MPLS label stacks before IP"),
    "icmp": ("communityid/icmp.pcap", "", "ICMP keying by type/counterpart and Community ID"),
    "tls-split-hello": ("tls/chrome-1250-tls-x25519-kyber.pcap", "checksums=ignore", "TLS 1.3 ClientHello with a post-quantum key share: SNI, ALPN, JA3, JA4"),
    "ssh": ("ssh/single-conn.pcap", "", "SSH banners of both sides"),
    "pcapng-multi-interface": ("pcapng-multi-interface.pcapng", "checksums=ignore", "pcapng with two interfaces of different link types"),
    "sll2": ("linux_dlt_sll2.pcap", "checksums=ignore", "Linux cooked capture v2 link type"),
    "ipv6-fragments": ("ipv6-fragmented-dns.pcap", "checksums=ignore", "IPv6 fragment reassembly of a DNS answer"),
    "teredo": ("tunnels/Teredo.pcap", "", "Teredo on port 3544 and on a relay's other port; DNS session expiry"),
    "vxlan": ("tunnels/vxlan.pcap", "", "VXLAN decapsulation with two outer flows as parents"),
}


def pcap_records(data):
    off = 24
    while off + 16 <= len(data):
        sec, frac, caplen, origlen = struct.unpack("<IIII", data[off:off + 16])
        yield sec, frac, caplen, origlen, data[off + 16:off + 16 + caplen]
        off += 16 + caplen


def write_case(name, data, ext, options, readme):
    d = os.path.join(os.path.dirname(__file__), name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("input."):
            os.remove(os.path.join(d, f))
    open(os.path.join(d, "input." + ext), "wb").write(data)
    if options:
        open(os.path.join(d, "options"), "w").write(options.replace(",", "\n") + "\n")
    open(os.path.join(d, "README.md"), "w").write(readme)


def main(traces):
    src_note = ("Source: Zeek test trace `testing/btest/Traces/{}` (github.com/zeek/zeek at "
                "a13de64fbbdb01f90961c04719b308fbbb6d199e, via `../shared/data/pcaps/zeek`), "
                "BSD-3-Clause (see `examples/LICENSE-zeek-traces.txt`).")
    for name, (trace, options, what) in CASES.items():
        data = open(os.path.join(traces, trace), "rb").read()
        ext = trace.rsplit(".", 1)[1]
        readme = f"# {name}\n\nChecks: {what}.\n\n{src_note.format(trace)} Unchanged copy.\n"
        if options:
            readme += f"\nOptions: `{options}` (as the Zeek test ran it).\n"
        write_case(name, data, ext, options, readme)

    get = open(os.path.join(traces, "http/get.pcap"), "rb").read()
    assert get[:4] == b"\xd4\xc3\xb2\xa1"
    # Nanosecond-resolution copy: magic a1b23c4d, fractions × 1000.
    ns = [b"\x4d\x3c\xb2\xa1" + get[4:24]]
    for sec, usec, caplen, origlen, pkt in pcap_records(get):
        ns.append(struct.pack("<IIII", sec, usec * 1000, caplen, origlen) + pkt)
    write_case("pcap-nanoseconds", b"".join(ns), "pcap", "",
               "# pcap-nanoseconds\n\nChecks: classic pcap with nanosecond timestamps gives the "
               "same flows as `http-get`.\n\nDerived by `make-cases.py` from "
               + src_note.format("http/get.pcap") + "\n")
    # Big-endian copy: every header field byte-swapped.
    be = [struct.pack(">IHHiIII", *struct.unpack("<IHHiIII", get[:24]))]
    for sec, usec, caplen, origlen, pkt in pcap_records(get):
        be.append(struct.pack(">IIII", sec, usec, caplen, origlen) + pkt)
    write_case("pcap-big-endian", b"".join(be), "pcap", "",
               "# pcap-big-endian\n\nChecks: a big-endian classic pcap gives the same flows as "
               "`http-get`.\n\nDerived by `make-cases.py` from " + src_note.format("http/get.pcap") + "\n")
    # Gzip-compressed copy.
    write_case("pcap-gzip", gzip.compress(get, mtime=0), "pcap.gz", "",
               "# pcap-gzip\n\nChecks: gzip-compressed input is read transparently.\n\nDerived by "
               "`make-cases.py` from " + src_note.format("http/get.pcap") + "\n")
    # Truncated copy: cut in the middle of the 9th record.
    off = 24
    for i, (_, _, caplen, _, _) in enumerate(pcap_records(get)):
        if i == 8:
            cut = off + 16 + caplen // 2
            break
        off += 16 + caplen
    write_case("truncated-capture", get[:cut], "pcap", "",
               "# truncated-capture\n\nChecks: a capture cut inside its 9th record. The 8 packets "
               "before the damage are processed and their flow is written; the error names the "
               f"byte offset of the damaged record ({off}).\n\nDerived by `make-cases.py` from "
               + src_note.format("http/get.pcap") + f" Cut at byte {cut}.\n")


if __name__ == "__main__":
    main(sys.argv[1])
