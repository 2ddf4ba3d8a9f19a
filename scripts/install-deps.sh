#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, when missing; with --bench also what
# the benchmarks measure with (make bench, bench-security, bench-all).
# Needs root (or sudo) on a fresh machine; a no-op when everything is there.
set -euo pipefail
# iproute2, iptables, nftables, gcc and libnetfilter-queue-dev: the NAT lab (Tests/IntegrationTests/NATLab,
# Benchmarks/nat-lab.sh) builds namespaces and NAT routers and compiles its packet-delaying reader.
# chromium: the dashboard tests (DashboardTests) load the stats endpoint's page in headless Chromium;
# prometheus: promtool checks deploy/prometheus (.ci/check-deploy.sh).
# man-db, zsh and fish: scripts/check-install.sh reads the installed man pages (man -l) and runs the
# zsh and fish completions.
PACKAGES=(ca-certificates python3 procps libsqlite3-dev sqlite3 libsystemd-dev systemd openssl
    iproute2 iptables nftables gcc libc6-dev libnetfilter-queue-dev chromium prometheus man-db zsh fish)
# --bench: nats-server, the third server of compare.sh's table (issue 10 compares against it);
# valgrind for instructions.sh and instructions-hs.sh; linux-perf for time-profile.sh; libssl-dev
# for security.sh's TLS load generator.
if [[ ${1:-} == --bench ]]; then
    PACKAGES+=(nats-server valgrind linux-perf libssl-dev)
fi
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v swift >/dev/null 2>&1 || [[ -x /opt/swift/usr/bin/swift ]] || {
    echo "install-deps: no Swift toolchain on PATH (expected Swift 6.3 at /opt/swift)" >&2
    exit 1
}
