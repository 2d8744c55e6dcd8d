#!/usr/bin/env bash
# make test-peers: tini's test/ and dumb-init's tests/, run against fleet-init.
#
# Their suites are fetched at test time from Debian's source packages (the .orig.tar.gz holds
# the upstream tree) and never copied into this repository. What is ours: how each suite is
# invoked (this script and tini_inner.py) and the list of excluded tests with their reasons
# (excluded.tsv). The init's path is pointed at fleet-init: `tini` in tini's BUILD_DIR and
# `dumb-init` on dumb-init's PATH are links to target/release/fleet-init.
#
# Needs root (apt-get) and the network to Debian's mirror. Ends with one line
# "peers: N passed, M failed, K skipped" and exits non-zero when a test failed.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work="$root/target/peers"
# FLEET_INIT_BIN runs them against another build (the shipped static one: target/fleet-init-static).
fleet="${FLEET_INIT_BIN:-$root/target/release/fleet-init}"
excluded="$root/peers/excluded.tsv"
python=/usr/bin/python3
debs=(python3 python3-psutil python3-prctl python3-pytest python3-py python3-pytest-timeout
  python3-pip gcc libc6-dev)

die() { echo "test-peers: $*" >&2; echo "peers: 0 passed, 1 failed"; exit 1; }

[ -x "$fleet" ] || die "$fleet is missing (make build)"

# Debian source entries for the mirror apt already uses, when there are none.
add_deb_src() {
  if grep -Eqs '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/*; then
    return
  fi
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      > /etc/apt/sources.list.d/fleet-init-peers-src.sources
  elif [ -f /etc/apt/sources.list ]; then
    grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' \
      > /etc/apt/sources.list.d/fleet-init-peers-src.list
  else
    die "no apt source to derive a deb-src entry from"
  fi
}

add_deb_src
mkdir -p "$root/target"
apt-get update -qq >"$root/target/peers-apt.log" 2>&1 || { cat "$root/target/peers-apt.log"; die "apt-get update failed"; }
missing=()
for deb in "${debs[@]}"; do
  dpkg -s "$deb" >/dev/null 2>&1 || missing+=("$deb")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get install -y -qq "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
fi

rm -rf "$work"
mkdir -p "$work/src" "$work/bin" "$work/tini-build" "$work/pylib"
cd "$work/src" || die "no $work/src"
# A missing Debian diff (it happens on mirrors) does not matter: only the .orig.tar.gz is used.
apt-get source --download-only tini dumb-init >"$work/apt-source.log" 2>&1 || true
tini_tar=$(ls tini_*.orig.tar.gz 2>/dev/null | head -1)
dumb_tar=$(ls dumb-init_*.orig.tar.gz 2>/dev/null | head -1)
if [ -z "$tini_tar" ] || [ -z "$dumb_tar" ]; then
  cat "$work/apt-source.log"
  die "apt-get source did not fetch both .orig.tar.gz"
fi
tar xzf "$tini_tar" && tar xzf "$dumb_tar" || die "cannot extract the sources"
tini_src=$(ls -d "$work"/src/tini-*/ | head -1)
dumb_src=$(ls -d "$work"/src/dumb-init-*/ | head -1)
echo "peers: $tini_tar, $dumb_tar"

# Their scripts say `#!/usr/bin/env python`: Debian's python3, which has the packages above.
ln -sf "$python" "$work/bin/python"
ln -sf "$python" "$work/bin/python3"
ln -sf "$fleet" "$work/bin/dumb-init"
ln -sf "$fleet" "$work/tini-build/tini"
# tini's inner tests import `bitmap`, which only PyPI has.
"$python" -m pip install --quiet --disable-pip-version-check --target "$work/pylib" bitmap \
  >"$work/pip.log" 2>&1 || { cat "$work/pip.log"; die "pip install bitmap failed"; }
gcc -o "$work/tini-build/sigconf-test" "$tini_src/test/sigconf/sigconf-test.c" \
  || die "cannot build tini's sigconf-test"

export PATH="$work/bin:$PATH"
# A private registry for the many fleet-inits the suites start.
export FLEET_INIT_STATE_DIR="$work/state"

passed=0 failed=0 skipped=0

# tini: test/run_inner_tests.py, test by test (tini_inner.py); run_outer_tests.py needs Docker.
echo "--- tini: test/run_inner_tests.py"
(cd "$tini_src" && env PYTHONPATH="$work/pylib" SOURCE_DIR="$tini_src" \
  BUILD_DIR="$work/tini-build" FORCE_SUBREAPER=1 \
  "$python" "$root/peers/tini_inner.py" "$tini_src/test/run_inner_tests.py" "$excluded") \
  | tee "$work/tini.log"
outer_reason=$(awk -F'\t' '$1 == "tini" && $2 == "run_outer_tests.py" { print $3 }' "$excluded")
echo "SKIP run_outer_tests.py: $outer_reason"
summary=$(grep -E '^tini: [0-9]+ passed' "$work/tini.log" | tail -1)
if [ -z "$summary" ]; then
  failed=$((failed + 1))
else
  read -r p f s < <(echo "$summary" | sed -E 's/^tini: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/')
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s + 1))
fi

# dumb-init: tests/ with pytest, the excluded tests deselected.
echo "--- dumb-init: tests/"
deselect=()
while IFS=$'\t' read -r suite test reason; do
  [ "$suite" = dumb-init ] || continue
  echo "SKIP $test: $reason"
  deselect+=(--deselect "$test")
done < <(grep -v '^#' "$excluded")
# Tests that compare everything the child's terminal shows run with FLEET_INIT_EVENTS=off, as a
# dumb-init user who wants its silence would: with a command, fleet-init's events go to stderr
# by default (SPEC), and a pty merges stderr into what they compare.
quiet=(tests/tty_test.py::test_tty)
count() { echo "$1" | grep -Eo "[0-9]+ $2" | grep -Eo '[0-9]+' || echo 0; }
run_pytest() {
  local log=$1
  shift
  (cd "$dumb_src" && "$python" -m pytest -p no:cacheprovider -q -rf "$@") | tee "$log"
  local summary
  summary=$(grep -E '^[=]* *[0-9]+ (passed|failed)' "$log" | tail -1)
  if [ -z "$summary" ]; then
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + $(count "$summary" passed)))
  failed=$((failed + $(count "$summary" failed) + $(count "$summary" error)))
  skipped=$((skipped + $(count "$summary" skipped)))
}
for test in "${quiet[@]}"; do deselect+=(--deselect "$test"); done
run_pytest "$work/dumb-init.log" "${deselect[@]}" tests
# Deselected: the excluded ones (counted as skipped) and the quiet ones (run next).
skipped=$((skipped + $(count "$(tail -1 "$work/dumb-init.log")" deselected) - ${#quiet[@]}))
echo "--- dumb-init, with FLEET_INIT_EVENTS=off: ${quiet[*]}"
FLEET_INIT_EVENTS=off run_pytest "$work/dumb-init-quiet.log" "${quiet[@]}"

echo "peers: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
