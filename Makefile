# make run   - install what a fresh machine lacks, build, run the relay with its embedded defaults
# make test  - install what a fresh machine lacks, build, run every test (unit + integration)
# make bench - release build measured side by side with the C baseline (../shared/bench)
# make bench-security - TLS vs plaintext, handshakes, memory per connection, a connection flood
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: deps run test bench bench-security bench-all release clean

deps:
	./scripts/install-deps.sh

release: deps
	swift build -c release --product ptpchat-relay

run: release
	"$$(swift build -c release --show-bin-path)/ptpchat-relay"

# XCTest only (there are no Swift Testing tests), and a plain "N passed, N failed" closing line.
test: deps
	swift build --build-tests
	set -o pipefail; swift test --skip-build --disable-swift-testing 2>&1 | tee .build/test.log
	@line=$$(grep -E 'Executed [0-9]+ tests?, with' .build/test.log | tail -n 1); \
	total=$$(echo "$$line" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/'); \
	failed=$$(echo "$$line" | sed -E 's/.* ([0-9]+) failures? .*/\1/'); \
	skipped=$$(echo "$$line" | grep -oE '[0-9]+ tests? skipped' | grep -oE '^[0-9]+' || echo 0); \
	echo "$$((total - failed - skipped)) passed, $$failed failed, $$skipped skipped"

bench: deps
	./Benchmarks/compare.sh

bench-security: deps
	./Benchmarks/security.sh

bench-all: deps
	./Benchmarks/all.sh

clean:
	rm -rf .build .build-release
