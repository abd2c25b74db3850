#!/bin/sh
# Installs the interoperability peers of crates/cli/tests/ipfix_export.rs from Debian
# packages: nfdump (nfcapd, nfdump), tshark, and softflowd (a reference NetFlow/IPFIX
# exporter). Idempotent: does nothing when they are all present. The package lists are
# refreshed (apt-get update) only when a first install attempt fails.
#
# Without these tools the IPFIX interoperability tests print SKIPPED and pass; under
# CI=true they fail, so CI runs this script before `cargo test`.
set -eu

has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }

missing=""
{ has nfcapd && has nfdump; } || missing="$missing nfdump"
has tshark || missing="$missing tshark"
has softflowd || missing="$missing softflowd"

if [ -z "$missing" ]; then
    echo "interop peers present: nfcapd, nfdump, tshark, softflowd"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# tshark's package asks whether non-root users may capture: answer no, without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" |
    $SUDO debconf-set-selections 2>/dev/null || true

echo "installing:$missing"
# shellcheck disable=SC2086 # the package names are meant to split
if ! $SUDO apt-get install -y --no-install-recommends $missing; then
    $SUDO apt-get update
    # shellcheck disable=SC2086
    $SUDO apt-get install -y --no-install-recommends $missing
fi

for tool in nfcapd nfdump tshark softflowd; do
    if ! has "$tool"; then
        echo "setup.sh: $tool still missing after installing:$missing" >&2
        exit 1
    fi
done
echo "interop peers installed"
