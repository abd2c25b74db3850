#!/usr/bin/env bash
# install-tools.sh — what the benchmark needs from Debian (root): traffic generators
# and servers for make-corpus.sh, GNU time, taskset, and the peers timed by run.sh.
set -euo pipefail
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  iproute2 ethtool tcpdump iperf3 dnsmasq-base bind9-dnsutils curl iputils-ping \
  netcat-openbsd python3 time util-linux argus-server argus-client nfdump softflowd >/dev/null
echo "install-tools: done" >&2
