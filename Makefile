# make run   - install what a fresh machine lacks, build, run the relay with its embedded defaults
# make test  - install what a fresh machine lacks, build, run every test (unit + integration)
# make bench - release build measured side by side with the C baseline (../shared/bench)
SHELL := /bin/bash
export PATH := /opt/swift/usr/bin:$(PATH)

.PHONY: deps run test bench release clean

deps:
	./scripts/install-deps.sh

release: deps
	swift build -c release --product ptpchat-relay

run: release
	"$$(swift build -c release --show-bin-path)/ptpchat-relay"

test: deps
	swift build --build-tests
	swift test --skip-build

bench: deps
	./Benchmarks/compare.sh

clean:
	rm -rf .build .build-release
