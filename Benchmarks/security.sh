#!/usr/bin/env bash
# The security benchmarks of issue 9: four tables, each measured side by side in one run, on
# loopback only. Builds the release relay, ../shared/bench (relay-load, baseline-relay) and
# Benchmarks/tls-load.c, makes a throw-away certificate, then runs Benchmarks/security_bench.py.
#
#   Benchmarks/security.sh                        # all four parts (~10 min on an idle machine)
#   Benchmarks/security.sh thr hs                 # only some parts: thr hs mem flood
#   REPS=1 DURATION=2 MEM_COUNTS=500 Benchmarks/security.sh    # a quick check
#
# 1. thr     msg/s over TLS vs plaintext (goal: TLS >= 0.7 of plaintext). relay-load has no TLS,
#            so both figures come from tls-load (C, OpenSSL, epoll, non-blocking): plaintext and TLS
#            go through the same read/write functions, framing, batching (one write per connection
#            per loop pass) and accounting, so the ratio measures the transport only. relay-load's
#            plaintext thr runs next to it as a cross-check of tls-load. 100 conns in pairs, window
#            64, payload 256, HELLO then MESSAGE/ACK; lost/unacked/dup counted. The `tls` row takes
#            OpenSSL's default suite order (AES-256-GCM first; the relay's BoringSSL follows the
#            client's order), the `tls-aes128` row offers AES-128-GCM first as BoringSSL clients
#            (ptpchat) do. srv_us and lg_us: the relay's and tls-load's CPU µs per delivered message
#            (they share the cores: msg/s follows the sum); srv_x: the relay's TLS cost / plaintext's.
#            A second table (THR_PIN, default 0/1 with 2+ CPUs) runs the relay alone on CPU 0 with one
#            event loop and every client on CPU 1: msg/s is then the relay's own capacity, and the
#            ratio its own TLS cost, not OpenSSL's in the client (tls-load's TLS costs it 2.8x its
#            plaintext CPU per message, and on shared cores that CPU is taken from the relay).
# 2. hs      TLS handshakes/s: the relay's tls.listen vs `openssl s_server` on the same certificate,
#            both measured by `openssl s_time -new` (one client tool, one connection at a time), next
#            to the C baseline's plaintext accept rate (relay-load hs_per_s, HS_CONNS connections);
#            plus the relay's TCP+TLS+HELLO and TCP+HELLO rates from tls-load with as many conns.
# 3. mem     RSS per idle connection: a fresh relay, RSS before and after N connections that said
#            HELLO (TLS: after the handshake), divided by N, at 1,000, 5,000 and 19,000 (goals at
#            19,000: plaintext <= 4 KiB, TLS <= 24 KiB). The holders are tls-load --mode hold
#            processes of MEM_PER_PROC connections each, each from its own address 127.0.1.x (the
#            file limit is 20,000 per process).
# 4. flood   100 good clients (relay-load, lat pattern: window 1, payload 64) with and without a
#            connection flood (tls-load --mode flood: as many connections per second as it can
#            open from FLOOD_SOURCES addresses, each closed at once, sending a junk frame, or left
#            idle): their p99 (goal: <= 2x), the relay's peak RSS (VmHWM) and its refusals from
#            /stats (connection_limit, per_ip_limit, per_ip_rate, ...). The accept limits are the
#            defaults here; the per-node budgets are off (a good lat client sends ~500 msg/s, over
#            the default 200/s: its p99 would measure `throttled`, not the flood).
#            Placement (FLOOD_PIN, default 0/1 with 2+ CPUs): the relay (every thread) and the good
#            clients on CPU 0, the flood tools on CPU 1, in the calm run and the flood run alike.
#            Unpinned (FLOOD_PIN=off), the flood tools take up to one of the two cores (97 % on a
#            quiet machine) in the flood run only: the relay and the good clients have two cores calm and about one
#            under the flood, and the ratio measured mostly that, not the relay (the relay's own
#            CPU under the flood is ~30-40 % of a core; see the relay CPU% column). Pinned, the
#            relay pays all of its flood work (accept, its NIO channel, close, the FIN it sends) on
#            the CPU the good clients use, and the flood still runs as fast as one CPU lets the
#            generator open connections (its conn/s is printed; compare it with the unpinned rate).
#            On loopback the kernel's side of each flood handshake (SYN, SYN-ACK, the accept
#            queue) runs on the sender's CPU, pinned or not: the relay machine's share of that is
#            not in this figure either way. FLOOD_COMPARE=path adds a second relay binary (e.g. the
#            previous build), measured in the same run, interleaved, each against its own calm run.
#
# thr, hs and mem run the relay with the accept and per-node limits off (limits.* = 0): they
# measure the transport. Until the relay has TLS listeners their TLS rows print "n/a".
#
# Knobs (environment, defaults in brackets): REPS [3], DURATION [5], WARMUP [1]; THR_CONNS [100],
# THR_WINDOW [64], THR_PAYLOAD [256]; HS_SECONDS [5], HS_CONNS [5000]; MEM_COUNTS
# [1000,5000,19000], MEM_PER_PROC [5000], MEM_TIMEOUT [180]; LAT_CONNS [100], FLOOD_PROCS [2],
# THR_PIN [0/1: RELAY_CPU/CLIENT_CPU, or off], FLOOD_SOURCES [8], FLOOD_MAX_OPEN [2000], FLOOD_KIND [mix: close|junk|idle|mix], FLOOD_TARGET
# [plain; tls: the flood hits the TLS listener, junk = a bad ClientHello],
# FLOOD_RELAY_CONFIG [extra YAML for the flood relay: a limits: section; by default the per-node
# budgets set to 0], FLOOD_LEAD [1: seconds the flood runs before the good clients connect; 30 for
# a flood in its steady state, after the relay's bans], FLOOD_PIN [0/1: RELAY_CPUS/FLOOD_CPUS for taskset, or off], FLOOD_COMPARE
# [unset; a second relay binary]; BENCH_PORTS [unset: ports the kernel picks; LOW-HIGH: only
# ports in that range, for a machine shared with other relays]; TLS_KEY_TYPE
# [ec: P-256; rsa: RSA 2048]; TLS_LOAD_MAX_VERSION [unset; 1.2 pins tls-load to TLS 1.2];
# RELAY_BIN [built here], BENCH_DIR [../shared/bench], SCRATCH_PATH [.build-release].
#
# The numbers are only meaningful on a quiet machine (compare ratios of one run, never runs).
# Benchmarks/tls_load_selftest.py checks tls-load itself (~20 s): complete runs in plaintext and
# TLS, loss and duplicates injected by the C baseline seen, hold and flood modes.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build-release}"

need_packages=()
command -v gcc >/dev/null 2>&1 || need_packages+=(gcc)
command -v openssl >/dev/null 2>&1 || need_packages+=(openssl)
[[ -f /usr/include/openssl/ssl.h ]] || need_packages+=(libssl-dev)
if ((${#need_packages[@]})); then
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "security.sh: installing ${need_packages[*]}" >&2
        apt-get install -y "${need_packages[@]}" >&2
    else
        echo "security.sh: needs ${need_packages[*]} (apt-get install -y ${need_packages[*]})" >&2
        exit 2
    fi
fi

NAME=security.sh
# shellcheck source=Benchmarks/load-tools-setup.sh
source "$ROOT/Benchmarks/load-tools-setup.sh"

case "${TLS_KEY_TYPE:-ec}" in
    ec) KEY_ARGS=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    rsa) KEY_ARGS=(-newkey rsa:2048) ;;
    *) echo "security.sh: TLS_KEY_TYPE is ec or rsa" >&2; exit 2 ;;
esac
openssl req -x509 "${KEY_ARGS[@]}" -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
chmod 600 "$WORK/key.pem"

ulimit -n "$(ulimit -Hn)"   # the relay and the clients hold up to 19,000 sockets each
echo "# ptpchat-relay security benchmarks ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), certificate ${TLS_KEY_TYPE:-ec})"
python3 "$ROOT/Benchmarks/security_bench.py" --relay "$BIN" --tls-load "$WORK/tls-load" \
    --relay-load "$BENCH/relay-load" --baseline "$BENCH/baseline-relay" \
    --cert "$WORK/cert.pem" --key "$WORK/key.pem" "$@"
