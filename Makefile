# fleet-init: build, test, lint, static binary, benchmark.
SHELL := /bin/bash
CARGO ?= cargo
STATIC_TARGET ?= x86_64-unknown-linux-gnu

.PHONY: build test test-peers lint static bench example clean

build:
	$(CARGO) build --release

# Unit tests of the pure core and integration tests that run the real binary as PID 1
# (unshare --pid --fork --mount-proc: needs root). The feature only adds the fault switch the
# abnormal-end tests use. Ends with one summary line over every test binary.
test:
	mkdir -p target; set -o pipefail; $(CARGO) test --lib --bins --tests --features fault-injection 2>&1 \
	  | tee target/test.log
	@awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($$(i+1) ~ /^passed/) p += $$i; \
	  if ($$(i+1) ~ /^failed/) f += $$i } } END { printf "tests: %d passed, %d failed\n", p, f }' \
	  target/test.log

# tini's test/ and dumb-init's tests/ against fleet-init, fetched at test time from Debian's
# source packages (needs root and Debian's mirror). See peers/run.sh and peers/excluded.tsv.
test-peers: build
	bash peers/run.sh

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

# End-to-end scenarios with fleet-init as the ENTRYPOINT of podman + runc containers (root;
# installs podman, runc and slirp4netns from Debian's packages when missing). Builds `static`
# first; FLEET_INIT_BIN=/path/to/fleet-init runs them against another build. Ends with one
# 'N passed, M failed' line. See e2e/ and the README's "End-to-end tests".
.PHONY: e2e
e2e:
	bash e2e/run.sh
