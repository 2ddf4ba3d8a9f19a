#!/usr/bin/env bash
# The NAT traversal numbers of issue 11: N hole-punch attempts per NAT pair type through the NAT
# lab (network namespaces, nftables NAT routers, 20 ms each way on the internet router), for both
# router behaviours (RST and drop), printed as a table. Needs root (as CI and this machine run).
#
#   Benchmarks/nat-lab.sh                          # ptpchat punch/listen, N=100, both behaviours
#   N=20 Benchmarks/nat-lab.sh                     # fewer attempts per row
#   HINT="on off" Benchmarks/nat-lab.sh            # with and without the relay's RTT hint
#                                                  #   (off: the responder runs with --no-rtt-hint)
#   CLIENT=reference Benchmarks/nat-lab.sh         # the lab's reference puncher (refpunch.py)
#   PAIRS="cone-cone restricted-restricted" BEHAVIOURS=drop Benchmarks/nat-lab.sh
#   RELAY_BIN=... PTPCHAT_BIN=... Benchmarks/nat-lab.sh   # measure given builds
#
# Anchors printed with the table: libp2p DCUtR measured 70 % +- 7 % success in the wild, 97.6 % of
# successes on the first attempt. How the lab is built: docs/nat-lab.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="/opt/swift/usr/bin:$PATH"
"$ROOT/scripts/install-deps.sh" >&2
SCRATCH="${SCRATCH:-$ROOT/.build-release}"
if [[ -z "${RELAY_BIN:-}" || ( "${CLIENT:-ptpchat}" == ptpchat && -z "${PTPCHAT_BIN:-}" ) ]]; then
    (cd "$ROOT" && "$ROOT/scripts/swift-build-release" --scratch-path "$SCRATCH" --product ptpchat-relay >&2 \
        && "$ROOT/scripts/swift-build-release" --scratch-path "$SCRATCH" --product ptpchat >&2)
    BIN_DIR="$(cd "$ROOT" && "$ROOT/scripts/swift-build-release" --scratch-path "$SCRATCH" --show-bin-path)"
    RELAY_BIN="${RELAY_BIN:-$BIN_DIR/ptpchat-relay}"
    PTPCHAT_BIN="${PTPCHAT_BIN:-$BIN_DIR/ptpchat}"
fi
read -r -a pairs <<<"${PAIRS:-cone-cone restricted-restricted cone-restricted restricted-cone symmetric-restricted restricted-symmetric}"
read -r -a behaviours <<<"${BEHAVIOURS:-rst drop}"
read -r -a hints <<<"${HINT:-on}"
exec python3 "$ROOT/Benchmarks/nat_lab.py" --relay "$RELAY_BIN" --client "${CLIENT:-ptpchat}" ${PTPCHAT_BIN:+--ptpchat "$PTPCHAT_BIN"} \
    --attempts "${N:-100}" --behaviours "${behaviours[@]}" --pairs "${pairs[@]}" --rtt-hint "${hints[@]}" --delay-ms "${DELAY_MS:-20}"
