# make run   - install what a fresh machine lacks, build both programs (release), run the relay with
#              its embedded defaults; the client `ptpchat` is next to it (the path is printed)
# make install [PREFIX=/usr/local] [DESTDIR=] - both programs, their man pages and their bash, zsh
#              and fish completions; make uninstall removes them (same PREFIX and DESTDIR)
# make test  - install what a fresh machine lacks, build, run every test (unit + integration)
# make bench - release build measured side by side with the C baseline (../shared/bench)
# make bench-security - TLS vs plaintext, handshakes, memory per connection, a connection flood
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: deps bench-deps run test bench bench-security bench-all release clean build-both manuals install uninstall check-install

# CONFIG=debug installs the debug build (the install check reuses the build of `make test`);
# BUILD_PATH is SwiftPM's scratch path for build-both, manuals and install.
CONFIG ?= release
BUILD_PATH ?= .build
# A release build goes through scripts/swift-build-release (every module without dynamic
# exclusivity checks; why: that script); a debug build keeps them.
SWIFT_BUILD = $(if $(filter release,$(CONFIG)),./scripts/swift-build-release,swift build -c $(CONFIG)) --scratch-path $(BUILD_PATH)
# The same flags for `swift package`: its plugins build the products again, and without them would
# replace the release binaries with ones that have the checks.
SWIFT_PACKAGE_FLAGS = $(if $(filter release,$(CONFIG)),$(shell ./scripts/swift-build-release --flags))
PREFIX ?= /usr/local
PROGRAMS := ptpchat-relay ptpchat
BINDIR = $(DESTDIR)$(PREFIX)/bin
MAN1DIR = $(DESTDIR)$(PREFIX)/share/man/man1
BASHDIR = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHDIR = $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHDIR = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
# Where the man pages are collected from the generate-manual plugin's work directory.
MANUALS = $(BUILD_PATH)/manuals/$(CONFIG)

deps:
	./scripts/install-deps.sh

release: deps
	$(MAKE) --no-print-directory build-both CONFIG=release BUILD_PATH=$(BUILD_PATH)

build-both: deps
	$(SWIFT_BUILD) --product ptpchat-relay
	$(SWIFT_BUILD) --product ptpchat
	@bin=$$($(SWIFT_BUILD) --show-bin-path); \
	echo "built: $$bin/ptpchat-relay (the relay) and $$bin/ptpchat (the client)"

run: release
	@bin=$$(swift build --scratch-path $(BUILD_PATH) -c release --show-bin-path); \
	echo "starting $$bin/ptpchat-relay; in another terminal: $$bin/ptpchat --help (or make install)"; \
	exec "$$bin/ptpchat-relay"

# Man pages from swift-argument-parser's generate-manual plugin (one page per program, every
# subcommand in it); it builds the package in $(CONFIG) first. It writes a blank line between the
# paragraphs of a discussion, which mdoc warns about: each becomes a paragraph break (.Pp).
manuals: build-both
	rm -rf $(MANUALS) && mkdir -p $(MANUALS)
	if [[ -d $(BUILD_PATH)/plugins ]]; then find $(BUILD_PATH)/plugins -path "*GenerateManual*" -name "*.1" -delete; fi
	swift package --scratch-path $(BUILD_PATH) $(SWIFT_PACKAGE_FLAGS) plugin generate-manual --configuration $(CONFIG)
	@for program in $(PROGRAMS); do \
	    page=$$(find $(BUILD_PATH)/plugins -path "*GenerateManual*" -name "$$program.1" | head -n 1); \
	    [[ -n $$page ]] || { echo "no man page for $$program from generate-manual" >&2; exit 1; }; \
	    sed 's/^$$/.Pp/' "$$page" > $(MANUALS)/$$program.1; \
	done

install: manuals
	@bin=$$($(SWIFT_BUILD) --show-bin-path); \
	set -e; \
	install -d "$(BINDIR)" "$(MAN1DIR)" "$(BASHDIR)" "$(ZSHDIR)" "$(FISHDIR)"; \
	for program in $(PROGRAMS); do \
	    install -m 0755 "$$bin/$$program" "$(BINDIR)/$$program"; \
	    install -m 0644 "$(MANUALS)/$$program.1" "$(MAN1DIR)/$$program.1"; \
	    "$$bin/$$program" --generate-completion-script bash > "$(BASHDIR)/$$program"; \
	    "$$bin/$$program" --generate-completion-script zsh > "$(ZSHDIR)/_$$program"; \
	    "$$bin/$$program" --generate-completion-script fish > "$(FISHDIR)/$$program.fish"; \
	    echo "installed $(BINDIR)/$$program, $(MAN1DIR)/$$program.1 and its bash, zsh and fish completions"; \
	done

uninstall:
	@for program in $(PROGRAMS); do \
	    rm -f "$(BINDIR)/$$program" "$(MAN1DIR)/$$program.1" "$(BASHDIR)/$$program" \
	        "$(ZSHDIR)/_$$program" "$(FISHDIR)/$$program.fish"; \
	    echo "removed $$program from $(DESTDIR)$(PREFIX)"; \
	done

# make install into a temporary PREFIX (and DESTDIR), then checks what it installed and uninstalls.
check-install:
	./scripts/check-install.sh

# XCTest only (there are no Swift Testing tests), and a plain "N passed, N failed" closing line.
test: deps
	swift build --build-tests
	set -o pipefail; swift test --skip-build --disable-swift-testing 2>&1 | tee .build/test.log
	@line=$$(grep -E 'Executed [0-9]+ tests?, with' .build/test.log | tail -n 1); \
	total=$$(echo "$$line" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/'); \
	failed=$$(echo "$$line" | sed -E 's/.* ([0-9]+) failures? .*/\1/'); \
	skipped=$$(echo "$$line" | grep -oE '[0-9]+ tests? skipped' | grep -oE '^[0-9]+' || echo 0); \
	echo "$$((total - failed - skipped)) passed, $$failed failed, $$skipped skipped"

bench-deps:
	./scripts/install-deps.sh --bench

bench: bench-deps
	./Benchmarks/compare.sh

bench-security: bench-deps
	./Benchmarks/security.sh

bench-all: bench-deps
	./Benchmarks/all.sh

clean:
	rm -rf .build .build-release
