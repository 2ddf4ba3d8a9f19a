#!/usr/bin/env bash
# Fuzz/run.sh [SECONDS] - builds the libFuzzer targets (release, -sanitize=fuzzer,address) and runs
# each for SECONDS (default 60), one after another, then prints one line per target: executions,
# executions per second, coverage (libFuzzer's final cov/ft), crashes. Exits 1 when a target
# crashed (the input is kept in Fuzz/.build-fuzz/crashes/<target>/).
#
# Environment: FUZZ_TARGETS (space-separated subset), FUZZ_RUNS (stop a target after this many
# executions, if the time lasts), FUZZ_MAX_LEN (largest input, default 16384 bytes).
# The corpus grows in Fuzz/.build-fuzz/corpus/<target> from run to run; seeds are rebuilt each
# run by make-seeds.py.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="/opt/swift/usr/bin:$PATH"
seconds="${1:-60}"
targets="${FUZZ_TARGETS:-fuzz-frame-decoder fuzz-json-tape fuzz-message-reader fuzz-mesh-routing}"
scratch=.build-fuzz

python3 make-seeds.py "$scratch/seeds" >/dev/null
# swiftc obeys only the last -sanitize= flag, and SwiftPM writes one per --sanitize in no fixed
# order: the combined -Xswiftc flag, which comes after them, makes every Swift module get both
# (without it a build is coverage-blind or ASan-blind at random). --sanitize stays for the C code
# and for the link (libFuzzer's main, the ASan runtime).
swift build -c release --sanitize fuzzer --sanitize address -Xswiftc -sanitize=fuzzer,address --scratch-path "$scratch" 2>&1 \
    | { grep -v -e "Cannot export local symbol '__asan_extra_spill_area'" || true; } >&2
bin="$scratch/release"

# The Swift runtime's own crash handler would race libFuzzer's (and trip ASan reading memory):
# libFuzzer reports the crash.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}"

rows=()
crashed=0
for target in $targets; do
    corpus="$scratch/corpus/$target"
    # Not "$scratch/artifacts": that is SwiftPM's folder for binary artifacts, and `swift build`
    # deletes what it does not know there.
    artifacts="$scratch/crashes/$target"
    log="$scratch/logs/$target.log"
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    before=$(find "$artifacts" -type f | wc -l)
    runs=()
    [[ -n "${FUZZ_RUNS:-}" ]] && runs=(-runs="$FUZZ_RUNS")
    echo "fuzz: $target for ${seconds}s" >&2
    start=$(date +%s)
    status=0
    "$bin/$target" "$corpus" "$scratch/seeds/$target" -max_total_time="$seconds" "${runs[@]}" \
        -max_len="${FUZZ_MAX_LEN:-16384}" -timeout=10 -rss_limit_mb=4096 -dict=ptpchat.dict \
        -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - start ))
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1 || true)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1 || true)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 | awk '{print $2 "/" $4}' || true)
    crashes=$(( $(find "$artifacts" -type f | wc -l) - before ))
    if (( status != 0 && crashes == 0 )); then crashes=1; fi
    # A coverage-blind build still "runs": refuse it (see the -sanitize note above).
    if grep -q "no interesting inputs were found" "$log"; then
        echo "fuzz: $target is not instrumented for coverage (libFuzzer: no interesting inputs); check the -sanitize flags" >&2
        crashed=1
    fi
    if (( crashes > 0 )); then
        crashed=1
        echo "fuzz: $target crashed (exit $status); log $PWD/$log, inputs in $PWD/$artifacts:" >&2
        grep -E -m 5 -e 'fuzz invariant broken|Fatal error|ERROR: AddressSanitizer|deadly signal' "$log" >&2 || true
    fi
    rows+=("$(printf '%-22s %12s %9s %14s %8s %7ss' "$target" "${executions:-?}" "${speed:-?}" "${cov:-?}" "$crashes" "$elapsed")")
done

printf '%-22s %12s %9s %14s %8s %8s\n' target executions exec/s cov/ft crashes time
printf '%s\n' "${rows[@]}"
exit $crashed
