#!/usr/bin/env zsh
# What zsh's completion system offers at the end of a command line, as a user pressing TAB would
# get it: an interactive zsh in a pseudo-terminal (zsh/zpty) with DIR first on fpath and compinit,
# the LINE typed and TAB pressed. Every candidate a completion function adds (compadd) is written
# to a file; prints them, one per line, sorted and without repeats.
#
#   zsh scripts/zsh-completion-offers.zsh DIR 'ptpchat '
#
# Exit 2 when zsh cannot run it (no zsh/zpty), 3 when the shell in the terminal did not answer.
emulate -L zsh
zmodload zsh/zpty || exit 2
local dir=$1 line=$2
# Removed at the end, not by an EXIT trap: the shell zpty forks would inherit it and run it when it
# is hung up.
local found=$(mktemp) || exit 2
zpty completer zsh -f -i
zpty -w completer "PS1=''; PS2=''; fpath=(${(q)dir} \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -w completer 'zstyle ":completion:*" menu no; zstyle ":completion:*" list-prompt ""'
# compadd wrapped: what it adds also goes to the file (-O: the matches it would add, no side effect).
zpty -w completer "compadd() { local -a got; builtin compadd -O got \"\$@\"; (( \$#got )) && print -rl -- \$got >>${(q)found}; builtin compadd \"\$@\"; }"
# Markers are printed as the output of arithmetic: the terminal echoes what is typed, and only the
# command's output has the number.
zpty -w completer 'print READY-$((20 + 22))'
zpty -r completer _ '*READY-42*' || exit 3
# The end of the completion is a marker printed by a function that completion calls when it is done
# (comppostfuncs); nothing more is typed before it: zsh may skip completing when more input waits.
zpty -w completer 'completion-done() { print -n END-$((20 + 22)); }; comppostfuncs=(completion-done)'
zpty -w -n completer "$line"$'\t'
zpty -r completer _ '*END-42*' || exit 3
zpty -d completer
sort -u $found
rm -f $found
