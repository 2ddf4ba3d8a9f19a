#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the benchmarks need, when missing.
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
