#!/usr/bin/env bash
# Checks `make install` and `make uninstall`: installs into a temporary PREFIX (and once more under
# a DESTDIR), then runs each installed program (--version, --help), renders each man page with
# `man -l`, asks each bash, zsh and fish completion for the subcommands as the shell would (zsh in
# a pseudo-terminal: scripts/zsh-completion-offers.zsh), and checks that uninstall removes every file. Last line: "N passed,
# N failed"; exit 1 on any failure. CONFIG=debug (the default here) installs the build `make test`
# made; CONFIG=release installs what `make install` installs.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
CONFIG="${CONFIG:-debug}"
export MANPAGER=cat MANWIDTH=100 LC_ALL=C.UTF-8

passed=0
failed=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pass() { passed=$((passed + 1)); echo "PASS  $1"; }
fail() { failed=$((failed + 1)); echo "FAIL  $1"; [[ $# -lt 2 ]] || sed 's/^/      /' <<<"$2"; }
check() { local name=$1; shift; local out; if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi; }

version=$(sed -nE 's/.*static let number = "([^"]+)".*/\1/p' Sources/PTPProtocol/ProjectVersion.swift)
subcommands_ptpchat="listen send routes punch bench"
subcommands_relay="serve mailbox check-config"

# The subcommands bash offers after "PROGRAM <TAB>", from the installed completion script.
bash_offers() {
    local script=$1 program=$2
    bash -c '
        source /usr/share/bash-completion/bash_completion 2>/dev/null || true
        source "$1"
        COMP_WORDS=("$2" ""); COMP_CWORD=1; COMP_LINE="$2 "; COMP_POINT=${#COMP_LINE}
        function=$(complete -p "$2" | sed -E "s/.*-F ([^ ]+).*/\1/")
        "$function" "$2" "" "$2"
        printf "%s\n" "${COMPREPLY[@]}"
    ' _ "$script" "$program"
}

# Checks one installed tree: ROOT/PREFIX.
check_tree() {
    local root=$1 label=$2
    for program in ptpchat-relay ptpchat; do
        local subs=$subcommands_ptpchat
        [[ $program == ptpchat-relay ]] && subs=$subcommands_relay
        local bin="$root/bin/$program"
        check "$label: $program is installed and executable" test -x "$bin"
        local said
        said=$("$bin" --version 2>&1)
        if [[ $said == "$version" ]]; then pass "$label: $program --version says $version"; else fail "$label: $program --version" "$said"; fi
        local help
        help=$("$bin" --help 2>&1)
        local missing=""
        for sub in $subs; do grep -qE "^ +$sub( |$)" <<<"$help" || missing+=" $sub"; done
        if [[ -z $missing ]]; then pass "$label: $program --help lists$(printf ' %s' $subs)"; else fail "$label: $program --help lacks$missing" "$help"; fi

        local page="$root/share/man/man1/$program.1" rendered warnings
        warnings=$(man -l "$page" 2>&1 >/dev/null)
        if [[ -z $warnings ]]; then pass "$label: man -l $program.1 renders without a warning"; else fail "$label: man -l $program.1 warns" "$warnings"; fi
        if rendered=$(man -l "$page" 2>/dev/null) && grep -q "$program" <<<"$rendered" && grep -qi "SYNOPSIS" <<<"$rendered"; then
            missing=""
            for sub in $subs; do grep -qw "$sub" <<<"$rendered" || missing+=" $sub"; done
            if [[ -z $missing ]]; then pass "$label: man -l $program.1 renders, with every subcommand"; else fail "$label: man page lacks$missing" "$rendered"; fi
        else
            fail "$label: man -l $page" "$rendered"
        fi

        local bash_script="$root/share/bash-completion/completions/$program" offered
        if offered=$(bash_offers "$bash_script" "$program" 2>&1); then
            missing=""
            for sub in $subs; do grep -qx "$sub" <<<"$offered" || missing+=" $sub"; done
            if [[ -z $missing ]]; then pass "$label: bash completes '$program <TAB>' to its subcommands"; else fail "$label: bash completion lacks$missing" "$offered"; fi
        else
            fail "$label: bash completion of $program" "$offered"
        fi
        local zsh_script="$root/share/zsh/site-functions/_$program"
        if [[ -s $zsh_script ]] && head -n 1 "$zsh_script" | grep -q "^#compdef $program\$"; then
            if command -v zsh >/dev/null 2>&1; then
                check "$label: zsh completion parses (zsh -n)" zsh -n "$zsh_script"
                # zsh's completion system in a terminal, as at "PROGRAM <TAB>" (compinit, the
                # installed directory on fpath).
                if offered=$(timeout 60 zsh scripts/zsh-completion-offers.zsh "${zsh_script%/*}" "$program " 2>&1); then
                    missing=""
                    for sub in $subs; do grep -qx "$sub" <<<"$offered" || missing+=" $sub"; done
                    if [[ -z $missing ]]; then pass "$label: zsh completes '$program <TAB>' to its subcommands"; else fail "$label: zsh completion lacks$missing" "$offered"; fi
                else
                    fail "$label: zsh completion of $program" "$offered"
                fi
            else
                pass "$label: zsh completion is there (#compdef $program; no zsh to run it)"
            fi
        else
            fail "$label: zsh completion $zsh_script" "$(head -n 3 "$zsh_script" 2>&1)"
        fi
        local fish_script="$root/share/fish/vendor_completions.d/$program.fish"
        if [[ ! -s $fish_script ]]; then
            fail "$label: fish completion $fish_script is missing"
        elif command -v fish >/dev/null 2>&1; then
            # fish's own completer, as at "PROGRAM <TAB>": one "candidate<TAB>description" per line.
            offered=$(fish --no-config -c "source '$fish_script'; complete -C '$program '" 2>&1 | cut -f1)
            missing=""
            for sub in $subs; do grep -qx "$sub" <<<"$offered" || missing+=" $sub"; done
            if [[ -z $missing ]]; then pass "$label: fish completes '$program <TAB>' to its subcommands"; else fail "$label: fish completion lacks$missing" "$offered"; fi
        elif grep -q "complete -c '\?$program'\?" "$fish_script"; then
            pass "$label: fish completion is there (complete -c $program; no fish to run it)"
        else
            fail "$label: fish completion $fish_script" "$(head -n 3 "$fish_script" 2>&1)"
        fi
    done
}

prefix="$work/prefix"
if out=$(make --no-print-directory install CONFIG="$CONFIG" PREFIX="$prefix" 2>&1); then
    pass "make install PREFIX=$prefix"
    check_tree "$prefix" "PREFIX"
    make --no-print-directory uninstall PREFIX="$prefix" >/dev/null 2>&1
    left=$(find "$prefix" -type f)
    if [[ -z $left ]]; then pass "make uninstall PREFIX=… leaves no file"; else fail "make uninstall left files" "$left"; fi
else
    fail "make install PREFIX=$prefix" "$(tail -n 30 <<<"$out")"
fi

# DESTDIR: a package build's staging root; the files land under DESTDIR/PREFIX.
stage="$work/stage"
if out=$(make --no-print-directory install CONFIG="$CONFIG" PREFIX=/opt/ptpchat DESTDIR="$stage" 2>&1); then
    if [[ -x $stage/opt/ptpchat/bin/ptpchat && -s $stage/opt/ptpchat/share/man/man1/ptpchat-relay.1 && ! -e /opt/ptpchat ]]; then
        pass "make install DESTDIR=… PREFIX=/opt/ptpchat stages under DESTDIR only"
    else
        fail "make install DESTDIR: files are not under $stage/opt/ptpchat" "$(find "$stage" | head -n 20)"
    fi
    make --no-print-directory uninstall PREFIX=/opt/ptpchat DESTDIR="$stage" >/dev/null 2>&1
    left=$(find "$stage" -type f)
    if [[ -z $left ]]; then pass "make uninstall DESTDIR=… leaves no file"; else fail "make uninstall DESTDIR left files" "$left"; fi
else
    fail "make install DESTDIR=$stage" "$(tail -n 30 <<<"$out")"
fi

echo "$passed passed, $failed failed"
((failed == 0))
