# fleet-init: build, test, lint, static binary, benchmark.
CARGO ?= cargo
STATIC_TARGET ?= x86_64-unknown-linux-gnu

.PHONY: build test lint static bench example clean

build:
	$(CARGO) build --release

# Unit tests of the pure core and integration tests that run the real binary as PID 1
# (unshare --pid --fork --mount-proc: needs root).
test:
	$(CARGO) test --all-targets --features fault-injection

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# Statically linked glibc build (musl toolchains cannot be fetched here).
static:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --target $(STATIC_TARGET)
	@ls -l target/$(STATIC_TARGET)/release/fleet-init

# Runs fleet-init as PID 1 of a fresh PID namespace on the example config.
example: build
	unshare --pid --fork --mount-proc target/release/fleet-init --config container/example.json

bench:
	bash bench/run.sh

clean:
	$(CARGO) clean
