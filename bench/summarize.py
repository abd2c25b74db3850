#!/usr/bin/env python3
"""Summarize bench/run.sh results: min/median/max wall time, packets/s, CPU seconds and
peak RSS per tool, ratios of tunnelwatch to each peer, the flood side by side, and the
regression gate (exit 1 if tunnelwatch's median rate is below MIN_PPS).

Usage: summarize.py RESULTS_DIR CORPUS "TOOLS" MIN_PPS
(tools with results in RESULTS_DIR but not in TOOLS are listed after them)
"""
import glob, os, re, statistics, sys

res, corpus, tools, min_pps = sys.argv[1], sys.argv[2], sys.argv[3].split(), float(sys.argv[4])


def parse_time(path):
    t = open(path).read()
    def field(name):
        m = re.search(re.escape(name) + r":\s*(\S+)", t)
        return m.group(1) if m else None
    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    parts = [float(x) for x in wall.split(":")] if wall else [0]
    secs = 0.0
    for p in parts:
        secs = secs * 60 + p
    status = int(field("Exit status") or 0)
    return {
        "wall": secs,
        "cpu": float(field("User time (seconds)") or 0) + float(field("System time (seconds)") or 0),
        "rss": int(field("Maximum resident set size (kbytes)") or 0) * 1024,
        "ok": status == 0,
    }


def packets():
    for f in sorted(glob.glob(os.path.join(res, "tunnelwatch.*.out"))):
        m = re.search(r"capture\(s\), (\d+) packets", open(f).read())
        if m:
            return int(m.group(1))
    return None


n = packets()
if not n:
    sys.exit("summarize: no tunnelwatch run reported a packet count")
rows = {}
timed = {os.path.basename(f).split(".")[0] for f in glob.glob(os.path.join(res, "*.*.time"))}
for t in tools + sorted(timed - set(tools)):
    runs = [parse_time(f) for f in sorted(glob.glob(os.path.join(res, f"{t}.*.time")))]
    runs = [r for r in runs if r["ok"] and r["wall"] > 0]
    if runs:
        rows[t] = runs

print(f"corpus: {corpus} ({os.path.getsize(corpus):,} bytes, {n:,} packets)")
print(f"| tool | runs | wall min / median / max (s) | Mpps (median wall) | CPU s (median) | Mpps per CPU s | peak RSS |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
med = {}
for t, runs in rows.items():
    w = sorted(r["wall"] for r in runs)
    cpu = statistics.median(r["cpu"] for r in runs)
    rss = max(r["rss"] for r in runs)
    med[t] = statistics.median(w)
    print(f"| {t} | {len(runs)} | {w[0]:.2f} / {med[t]:.2f} / {w[-1]:.2f} | {n / med[t] / 1e6:.2f} | "
          f"{cpu:.2f} | {n / cpu / 1e6 if cpu else 0:.2f} | {rss / 2**20:.0f} MiB |")
print()
if "tunnelwatch" in med:
    for t in med:
        if not t.startswith("tunnelwatch"):
            print(f"tunnelwatch speed relative to {t}: {med[t] / med['tunnelwatch']:.2f}x (their median wall / ours)")
    if "tunnelwatch-2t" in med:
        print(f"--threads 2 speed-up: {med['tunnelwatch'] / med['tunnelwatch-2t']:.2f}x")
    if "tunnelwatch-packetpath" in med:
        print(f"packet path alone (no records, no detectors): {med['tunnelwatch'] / med['tunnelwatch-packetpath']:.2f}x the default run")
    if "tunnelwatch-1core" in med:
        # The default run already spreads over the cores (reader, writer, detection).
        print(f"default run on all {os.cpu_count()} CPUs against one CPU: "
              f"{med['tunnelwatch-1core'] / med['tunnelwatch']:.2f}x")
        if "tunnelwatch-2t" in med:
            print(f"--threads 2 on all CPUs against the default run on one CPU: "
                  f"{med['tunnelwatch-1core'] / med['tunnelwatch-2t']:.2f}x")
rec = os.path.join(res, "tunnelwatch.records")
if os.path.exists(rec):
    print(f"tunnelwatch flow records: {open(rec).read().strip()}")

# The flood, side by side: one run per tool (bench/run.sh writes flood/TOOL.{time,out,rc}).
floods = sorted(glob.glob(os.path.join(res, "flood", "*.time")),
                key=lambda p: (not os.path.basename(p).startswith("tunnelwatch"), p))
if floods:
    print()
    print("flood (distinct spoofed sources, one run each):")
    print("| tool | wall (s) | CPU s | peak RSS | finished |")
    print("| --- | ---: | ---: | ---: | --- |")
    for path in floods:
        t = os.path.basename(path)[: -len(".time")]
        f = parse_time(path)
        rc_path = os.path.join(res, "flood", f"{t}.rc")
        rc = int(open(rc_path).read().strip() or 0) if os.path.exists(rc_path) else 0
        done = "yes" if rc == 0 else ("stopped at the time limit" if rc in (124, 137) else f"exit {rc}")
        print(f"| {t} | {f['wall']:.2f} | {f['cpu']:.2f} | {f['rss'] / 2**20:.0f} MiB | {done} |")
    out_path = os.path.join(res, "flood", "tunnelwatch.out")
    if os.path.exists(out_path):
        out = open(out_path).read()
        ev = re.search(r"(\d+) flows evicted", out)
        peak = re.search(r"peak (\d+) live flows", out)
        print(f"tunnelwatch under the flood: evicted {ev.group(1) if ev else '?'}, "
              f"peak live flows {peak.group(1) if peak else '?'}")

if "tunnelwatch" not in med:
    sys.exit("summarize: tunnelwatch did not run successfully")
pps = n / med["tunnelwatch"]
if pps < min_pps:
    sys.exit(f"REGRESSION: tunnelwatch read at {pps / 1e6:.2f} Mpps is below {min_pps / 1e6:.2f} Mpps")
print(f"regression gate: {pps / 1e6:.2f} Mpps >= {min_pps / 1e6:.2f} Mpps: ok")
