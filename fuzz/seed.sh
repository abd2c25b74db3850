#!/usr/bin/env bash
# Seeds the fuzz corpora from the golden captures: each capture file for the reader,
# and each packet (for the decoder: with an Ethernet link-type selector byte) and
# short packet sequences (for the flow table) extracted with Python's stdlib.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/capture_reader corpus/decode corpus/flow_table corpus/config corpus/firewall_log corpus/netflow corpus/store_blocks
cp ../docs/config.example.toml corpus/config/example.toml
cp ../tests/logs/*.log corpus/firewall_log/
for f in ../tests/golden/*/input.pcap*; do
  cp "$f" "corpus/capture_reader/$(basename "$(dirname "$f")")-$(basename "$f")"
done
python3 - <<'PY'
import glob, os, struct, gzip
for path in glob.glob('../tests/golden/*/input.pcap') + glob.glob('../tests/golden/*/input.pcap.gz'):
    data = open(path, 'rb').read()
    if path.endswith('.gz'):
        data = gzip.decompress(data)
    if data[:4] not in (b'\xd4\xc3\xb2\xa1', b'\x4d\x3c\xb2\xa1'):
        continue
    if struct.unpack('<I', data[20:24])[0] != 1:
        continue
    case = os.path.basename(os.path.dirname(path))
    off, n, seq = 24, 0, b''
    while off + 16 <= len(data):
        caplen = struct.unpack('<I', data[off + 8:off + 12])[0]
        pkt = data[off + 16:off + 16 + caplen]
        open(f'corpus/decode/{case}-{n}', 'wb').write(bytes([1]) + pkt)
        seq += struct.pack('>HH', 10, len(pkt)) + pkt
        off += 16 + caplen
        n += 1
    open(f'corpus/flow_table/{case}', 'wb').write(seq)
# NetFlow/IPFIX: the UDP payloads of the exported datagrams the collector tests use
# (../shared's akvorado and pmacct captures, when present), as one stream per file.
for path in sorted(glob.glob('../../shared/data/pcaps/akvorado/outlet/flow/decoder/netflow/testdata/*.pcap')
                   + glob.glob('../../shared/data/pcaps/pmacct-test-automation/tests/*/traffic-*.pcap')):
    data = open(path, 'rb').read()
    if data[:4] != b'\xd4\xc3\xb2\xa1' or struct.unpack('<I', data[20:24])[0] != 1:
        continue
    off, seq = 24, b''
    while off + 16 <= len(data):
        caplen = struct.unpack('<I', data[off + 8:off + 12])[0]
        pkt = data[off + 16:off + 16 + caplen]
        off += 16 + caplen
        if len(pkt) < 14 + 20 + 8 or pkt[12:14] not in (b'\x08\x00', b'\x86\xdd'):
            continue
        ip = 14 + ((pkt[14] & 15) * 4 if pkt[12:14] == b'\x08\x00' else 40)
        payload = pkt[ip + 8:]
        seq += struct.pack('>HB', len(payload), 1) + payload
    name = '-'.join(path.split('/')[-2:])
    open(f'corpus/netflow/{name}', 'wb').write(seq)
# A stored flow block of one record as store_blocks takes it (docs/specs/store.md):
# parts split at FF FE; a leading even byte asks the harness to compress (and frame).
json = open('../tests/golden/http-get/flows.jsonl', 'rb').read().split(b'\n')[0]
v4 = lambda a: bytes(10) + b'\xff\xff' + bytes(a)
c, s = v4([10, 0, 0, 1]), v4([192, 0, 2, 1])
def text(*xs):
    return b''.join(bytes([len(x)]) + x for x in xs)
fixed = (struct.pack('<qqd', 0, 500000, 0.5) + c + s + struct.pack('<HHB', 40000, 443, 1)
         + struct.pack('<6Q', 3, 2, 100, 2000, 220, 2080) + struct.pack('<III', 0, len(json), 0))
meta = b'\x01' + struct.pack('<I', 1) + fixed + text(b'C1', b'1:x', b'tcp', b'', b'SF', b'ShAFf', b'end')
keys = struct.pack('<q', 0) + c + s + struct.pack('<H', 443)
segment = b'\x01' + c + s + struct.pack('<H', 443) + struct.pack('<8q', 1, 3, 2, 100, 2000, 500000, 0, 500000)
bloom = b'\x01' + b'\x01' + b'\xff' * 64
parts = [bloom, b'\x00' + keys, b'\x00' + meta, b'\x00' + json, b'\x00' + segment, meta]
open('corpus/store_blocks/one-record', 'wb').write(b'\xff\xfe'.join(parts))
# The same block as this build writes it: meta format 2, the record in its stored form
# (crates/store/src/codec.rs; uid and community_id are in the meta row): varints,
# zigzag times, 8-byte floats, presence bits.
def uv(v):
    out = b''
    while v >= 0x80:
        out += bytes([(v & 0x7f) | 0x80]); v >>= 7
    return out + bytes([v])
def st(x):
    return uv(len(x)) + x
def direction(pkts, payload):
    return uv(1) + b''.join(uv(v) for v in (payload, payload + 54 * pkts, 0, 0, 0, 0, 0, 0)) \
        + st(b'SAF') + uv(0) + struct.pack('<4d', 0.1, 0.0, 0.2, 0.05) + uv(0)
rec = (uv(1) + uv(0) + uv(1_000_000_000) + struct.pack('<d', 0.5)
       + st(b'tcp') + uv(6) + b'\x04' + bytes([10, 0, 0, 1]) + uv(40000) + b'\x04'
       + bytes([192, 0, 2, 1]) + uv(443) + st(b'http')
       + b''.join(uv(v) for v in (3, 2, 100, 2000, 220, 2080, 0))
       + uv(2) + st(b'ShAFf') + uv(0) + uv(0) + uv(0) + direction(3, 100) + direction(2, 2000))
fixed2 = fixed[:-12] + struct.pack('<III', 0, len(rec), 0)
meta2 = b'\x02' + struct.pack('<I', 1) + fixed2 + text(b'C1', b'1:x', b'tcp', b'http', b'SF', b'ShAFf', b'end')
# A format-2 segment (stored as it is: a leading odd byte), as this build writes them.
segment2 = b'\x01' + b'\xff\xff\xff\xff\x02' + uv(0) + uv(1) + b'\x04' + bytes([10, 0, 0, 1]) + b'\x04' + bytes([192, 0, 2, 1]) + uv(443) + b''.join(uv(2 * v) for v in (1, 3, 2, 100, 2000, 500000, 0, 500000))
parts = [bloom, b'\x00' + keys, b'\x00' + meta2, b'\x00' + rec, segment2, meta2]
open('corpus/store_blocks/one-record-v2', 'wb').write(b'\xff\xfe'.join(parts))
PY
echo "seeded: $(ls corpus/capture_reader | wc -l) captures, $(ls corpus/decode | wc -l) packets, $(ls corpus/flow_table | wc -l) sequences, $(ls corpus/netflow | wc -l) NetFlow streams"
