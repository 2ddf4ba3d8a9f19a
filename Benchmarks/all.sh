#!/usr/bin/env bash
# Every benchmark of issues 9 and 10 in one sitting, one after the other on the same machine, then
# one summary table of the goals. Each part prints its own full table first:
#
#   1. compare.sh          lat, thr, conn: msg/s, p99 and handshakes/s of the C baseline,
#                          nats-server and the relay, with the ratios; the mesh row (two relays)
#   2. security.sh thr     thr over TLS vs plaintext
#   3. memory.sh           RSS per idle plaintext connection; RSS under sustained load over idle
#   4. instructions.sh     callgrind instructions per delivered message, relay vs C baseline
#   5. instructions-hs.sh  callgrind instructions per handshake, relay vs C baseline
#   6. handshakes.sh       handshakes/s over many bursts: C baseline, NIO floor (one write and the
#                          contract's two), relay
#   7. lat-reps.sh         the lat load over 12 interleaved reps, with how each rep was scheduled
#
#   Benchmarks/all.sh                  # everything (about 17 min on an idle machine)
#   QUICK=1 Benchmarks/all.sh          # one rep, short runs, smaller idle counts
#
# Ratios are only comparable within one run of this script (the machine is shared).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$(mktemp -d -t ptpchat-all.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT

if [[ "${QUICK:-0}" == 1 ]]; then
    export REPS="${REPS:-1}" DURATION="${DURATION:-3}" IDLE_COUNTS="${IDLE_COUNTS:-1000,5000}" ROUNDS="${ROUNDS:-1}" \
        BURSTS="${BURSTS:-8}" LAT_REPS="${LAT_REPS:-3}"
fi

part() {
    local name=$1
    shift
    echo
    echo "=================== $name"
    "$@" 2>"$OUT/$name.err" | tee "$OUT/$name.out"
    local status=${PIPESTATUS[0]}
    if ((status != 0)); then
        echo "all.sh: $name failed (exit $status):" >&2
        tail -n 5 "$OUT/$name.err" >&2
    fi
}

part compare "$ROOT/Benchmarks/compare.sh"
part tls "$ROOT/Benchmarks/security.sh" thr
part memory "$ROOT/Benchmarks/memory.sh"
part instructions "$ROOT/Benchmarks/instructions.sh"
if [[ -x "$ROOT/Benchmarks/instructions-hs.sh" ]]; then
    part instructions-hs "$ROOT/Benchmarks/instructions-hs.sh"
fi
part handshakes "$ROOT/Benchmarks/handshakes.sh"
part lat-reps "$ROOT/Benchmarks/lat-reps.sh"

# The summary: the figure each goal is about, read from the tables above.
value() { # value PART AWK-PROGRAM: the program prints one field of one row, or nothing
    awk "$2" "$OUT/$1.out" 2>/dev/null | head -n 1
}
row() { printf "%-44s %14s %12s\n" "$1" "${2:--}" "$3"; }

echo
echo "=================== summary (this run)"
row "figure" "value" "goal"
for cfg in lat thr conn; do
    row "$cfg msg/s, relay / C baseline" "$(value compare "\$1 == \"$cfg\" && \$3 == \"relay\" { print \$5 }")" ">= 0.8"
done
row "lat p99, relay / C baseline" "$(value compare '$1 == "lat" && $3 == "relay" { print $9 }')" "<= 1.3"
row "  lat msg/s, median of many reps" "$(value lat-reps '$1 == "relay" && NF == 6 { print $3 }')" ">= 0.8"
row "  lat p99, median of many reps" "$(value lat-reps '$1 == "relay" && NF == 6 { print $5 }')" "<= 1.3"
base_hs=$(value compare '$1 == "conn" && $3 == "baseline" { print $11 }')
relay_hs=$(value compare '$1 == "conn" && $3 == "relay" { print $11 }')
row "handshakes/s (conn), relay / C baseline" \
    "$(awk -v r="$relay_hs" -v b="$base_hs" 'BEGIN { if (r + 0 > 0 && b + 0 > 0) printf "%.2f", r / b }')" ">= 0.8"
row "  the same, median of many bursts" "$(value handshakes '$1 == "relay" { print $3 }')" ">= 0.8"
row "  the NIO floor, median of many bursts" "$(value handshakes '$1 == "floor" { print $3 }')" ""
row "  the NIO floor with the contract's two writes" "$(value handshakes '$1 == "floor-contract" { print $3 }')" ""
row "mesh msg/s, two relays / one (thr)" "$(value compare '$1 == "mesh" { print $7 }')" ""
row "thr over TLS / plaintext, shared cores" "$(value tls '$1 == "tls-load" && $2 == "tls" { print $4 }')" ">= 0.7"
# security.sh's second thr table (THR_PIN): the relay alone on a CPU, its own capacity.
row "  relay on its own CPU, AES-256-GCM" "$(value tls '$1 == "tls-load" && $2 == "tls" && ++n == 2 { print $4 }')" ">= 0.7"
row "  relay on its own CPU, AES-128-GCM" "$(value tls '$1 == "tls-load" && $2 == "tls-aes128" && ++n == 2 { print $4 }')" ">= 0.7"
row "instructions per message, relay / C" "$(value instructions '$1 == "relay" { print $5 }')" "toward 2"
row "instructions per handshake, relay / C" "$(value instructions-hs '$1 == "relay" { print $NF }')" ""
row "RSS per idle plaintext connection, KiB" "$(value memory '$1 == "this" && $2 == 19000 { print $6 }')" "<= 4"
row "RSS peak under load / idle (round 1)" "$(value memory '$1 == "this" && $3 == 1 && NF >= 8 { print $6 }')" "<= 2"
row "RSS after the quiet spell / idle" "$(value memory '$1 ~ /^[0-9]+$/ && NF == 10 { print $9 }')" "<= 2"
