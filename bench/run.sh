#!/usr/bin/env bash
# `make bench`: install the peer inits, build fleet-init (dynamic and crt-static) and the C
# helpers, then run bench/bench.py (arguments are passed on: an output path for the JSON,
# --only, --inits, --markdown FILE). QUICK=1 for a 1-2 minute run. Needs root.
set -u
cd "$(dirname "$0")/.."

say() { echo "bench/run.sh: $*" >&2; }

# 1. Peers, from Debian's packages; one that cannot be had is skipped (bench.py reports n/a).
declare -A binary_of=([tini]=tini [dumb-init]=dumb-init [catatonit]=catatonit [s6]=s6-svscan
                      [supervisor]=supervisord)
missing=()
for pkg in tini dumb-init catatonit s6 supervisor; do
    command -v "${binary_of[$pkg]}" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing ${missing[*]}"
        timeout 300 apt-get update -qq || say "apt-get update failed; trying the install anyway"
        for pkg in "${missing[@]}"; do
            if ! DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq \
                --no-install-recommends "$pkg" >/dev/null; then
                say "cannot install $pkg: skipping it (n/a in the tables)"
            fi
        done
    else
        say "not root or no apt-get: skipping ${missing[*]} (n/a in the tables)"
    fi
fi
# The supervisor package may start a system supervisord where there is an init system; the
# bench starts its own, so nothing else is needed here.

# 2. fleet-init: the release build the tables call fleet-init, and the static (musl) one.
cargo build --release --bin fleet-init --example tree_bench || { say "cargo build --release failed"; exit 1; }
CARGO_TARGET_DIR=target/static sh container/build-static ||
    say "static build failed: fleet-init-static is skipped"

# 3. The C helpers (bench.py would build missing ones too).
mkdir -p bench/build
for helper in sigwait sendsig orphans; do
    cc -O2 -Wall -o "bench/build/$helper" "bench/$helper.c" || { say "cc $helper.c failed"; exit 1; }
done
cc -O2 -Wall -static -o bench/build/stamp bench/stamp.c 2>/dev/null ||
    cc -O2 -Wall -o bench/build/stamp bench/stamp.c || { say "cc stamp.c failed"; exit 1; }

# 4. Worker output (issue 14): jsonl vs inherit vs cat vs a C relay of the same bytes, and SIGTERM latency beside a flood.
#    Its own script and table; OUTPUT_BENCH=0 skips it, OUTPUT_GIB / OUTPUT_REPS size it.
if [ "${OUTPUT_BENCH:-1}" != 0 ]; then
    for helper in lines relay; do
        cc -O2 -Wall -o "bench/build/$helper" "bench/$helper.c" || { say "cc $helper.c failed"; exit 1; }
    done
    python3 bench/output.py || say "bench/output.py failed"
fi

# 5. The run.
exec python3 bench/bench.py "$@"
