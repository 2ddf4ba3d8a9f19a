# Sourced by instructions.sh and instructions-hs.sh: what running the relay and the C baseline
# under valgrind 3.19's callgrind takes here. Expects ROOT, BENCH, SCRATCH and NAME (for messages);
# RELAY_BIN may name a relay build to use instead of building one; FLOOR_BIN a build of the NIO
# floor relay (Benchmarks/NIOFloor), copied to WORK/floor. Sets WORK (removed on exit),
# with WORK/relay, WORK/baseline (copies stripped of their debug information: valgrind 3.19
# cannot read Swift's DWARF 5) and WORK/sigsuspend.so (a preload that copies the mask
# sigsuspend is given: valgrind 3.19 writes into it, and libdispatch's is in read-only memory).
# Turns the accept and per-node limits off, as compare.sh does.

command -v valgrind >/dev/null || { echo "$NAME: valgrind is not installed (apt-get install -y valgrind)" >&2; exit 2; }
# shellcheck source=Benchmarks/shared-bench-tools.sh
source "$ROOT/Benchmarks/shared-bench-tools.sh"

if [[ -z "${RELAY_BIN:-}" ]]; then
    "$ROOT/scripts/swift-build-release" --product ptpchat-relay --scratch-path "$SCRATCH" >&2
    RELAY_BIN="$("$ROOT/scripts/swift-build-release" --scratch-path "$SCRATCH" --show-bin-path)/ptpchat-relay"
fi
WORK="$(mktemp -d -t "ptpchat-$NAME.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

cp "$RELAY_BIN" "$WORK/relay" && strip --strip-debug "$WORK/relay"
cp "$BENCH/baseline-relay" "$WORK/baseline" && strip --strip-debug "$WORK/baseline"
# FLOOR_BIN (Benchmarks/nio-floor.sh's build of Benchmarks/NIOFloor) adds the `floor` target.
if [[ -n "${FLOOR_BIN:-}" ]]; then cp "$FLOOR_BIN" "$WORK/floor" && strip --strip-debug "$WORK/floor"; fi
cat >"$WORK/sigsuspend.c" <<'CODE'
#define _GNU_SOURCE
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>
int sigsuspend(const sigset_t *mask) { sigset_t copy = *mask; return (int)syscall(SYS_rt_sigsuspend, &copy, 8); }
CODE
gcc -O2 -shared -fPIC "$WORK/sigsuspend.c" -o "$WORK/sigsuspend.so"

export LIMITS_PER_IP_CONNECTIONS=0 LIMITS_PER_IP_NEW_PER_SECOND=0 LIMITS_NODE_MESSAGES_PER_SECOND=0 LIMITS_NODE_BYTES_PER_SECOND=0
