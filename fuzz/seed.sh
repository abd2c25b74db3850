#!/usr/bin/env bash
# Seeds the fuzz corpora from the golden captures: each capture file for the reader,
# and each packet (for the decoder: with an Ethernet link-type selector byte) and
# short packet sequences (for the flow table) extracted with Python's stdlib.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/capture_reader corpus/decode corpus/flow_table corpus/config corpus/firewall_log
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
PY
echo "seeded: $(ls corpus/capture_reader | wc -l) captures, $(ls corpus/decode | wc -l) packets, $(ls corpus/flow_table | wc -l) sequences"
