# fleet-init: build, test, lint, static binary, benchmark.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: build test test-static test-peers lint static bench example clean

build:
	$(CARGO) build --release

# Unit tests of the pure core and integration tests that run the real binary as PID 1
# (unshare --pid --fork --mount-proc: needs root).
# - Every test runs the default build, the binary we ship, except the tests of an abnormal end:
#   they need the fault switch (FLEET_INIT_FAULT) of the `fault-injection` feature, live in a
#   `mod abnormal_end` gated on it, and run from a second build selected by the name filter
#   `abnormal_end::`. That build has its own target dir ($(FAULT_TARGET_DIR)), so the two
#   fleet-init binaries (CARGO_BIN_EXE_fleet-init) never replace each other.
# - A test whose premise cannot be set up on this host (e.g. no cgroup memory controller to
#   set a limit in) calls common::skip, which appends `SKIPPED: test: reason` to the file
#   named by FLEET_TEST_SKIPS, and returns. A file, not the test's stdout: libtest captures that and
#   shows it only on failure. libtest counts such a test as passed; the summary moves it
#   from passed to skipped.
# - Ends with one summary line over every test binary of both builds,
#   `tests: N passed, M failed, K skipped`, printed also when a test failed (--no-fail-fast:
#   every binary runs); make then fails.
FAULT_TARGET_DIR ?= target/fault
SKIPS := $(CURDIR)/target/test-skipped.log
# $(call summary,LABEL,LOG): `LABEL: N passed, M failed, K skipped` over LOG's `test result:`
# lines, the tests that called common::skip moved from passed to skipped.
summary = awk -v label=$(1) -v skipped="$$(grep -c '^SKIPPED: ' $(SKIPS))" \
	  '/^test result:/ { for (i = 1; i <= NF; i++) { if ($$(i+1) ~ /^passed/) p += $$i; \
	  if ($$(i+1) ~ /^failed/) f += $$i } } \
	  END { printf "%s: %d passed, %d failed, %d skipped\n", label, p - skipped, f, skipped }' $(2)
test:
	mkdir -p target; : > $(SKIPS); set -o pipefail; \
	{ FLEET_TEST_SKIPS=$(SKIPS) $(CARGO) test --no-fail-fast --lib --bins --tests; default=$$?; \
	  FLEET_TEST_SKIPS=$(SKIPS) CARGO_TARGET_DIR=$(FAULT_TARGET_DIR) $(CARGO) test --no-fail-fast \
	    --features fault-injection --tests -- abnormal_end::; fault=$$?; \
	  [ $$default -eq 0 ] && [ $$fault -eq 0 ]; } 2>&1 | tee target/test.log; status=$$?; \
	$(call summary,tests,target/test.log); \
	exit $$status

# The integration tests again, against the binary that ships: the static build (musl, where
# `make test` runs the dynamic glibc one). FLEET_INIT_BIN points tests/common at it. The tests
# of an abnormal end are not among them: they need the fault switch the shipped build has not.
test-static: static
	mkdir -p target; : > $(SKIPS); set -o pipefail; \
	FLEET_TEST_SKIPS=$(SKIPS) FLEET_INIT_BIN=$(CURDIR)/target/fleet-init-static \
	  $(CARGO) test --no-fail-fast --test '*' 2>&1 | tee target/test-static.log; status=$$?; \
	$(call summary,static,target/test-static.log); \
	exit $$status

# tini's test/ and dumb-init's tests/ against fleet-init, fetched at test time from Debian's
# source packages (needs root and Debian's mirror). See peers/run.sh and peers/excluded.tsv.
test-peers: build
	bash peers/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --features fault-injection -- -D warnings

# The shipped binary, statically linked (musl; glibc when the toolchain has no musl std), at
# target/fleet-init-static; its flags and why are in container/build-static. See also the
# README's dependency notes.
static:
	CARGO=$(CARGO) sh container/build-static
	@ls -l target/fleet-init-static

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
