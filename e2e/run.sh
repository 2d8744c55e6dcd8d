#!/usr/bin/env bash
# make e2e: fleet-init as the ENTRYPOINT of real podman/runc containers.
# Installs what it needs from Debian's packages, builds the static binary unless
# FLEET_INIT_BIN names one, then hands over to e2e/scenarios.py, whose last line is
# "N passed, M failed".
set -euo pipefail
if [ -n "${FLEET_INIT_BIN:-}" ]; then
  FLEET_INIT_BIN="$(realpath "$FLEET_INIT_BIN")"
fi
cd "$(dirname "$0")/.."

# podman's Debian package pulls in conmon; runc because crun refuses
# this machine's hybrid (v1 + unified) cgroup layout. The busybox rootfs comes from the
# busybox-static .deb, downloaded by e2e/harness.py, not installed on the host.
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v slirp4netns >/dev/null || need+=(slirp4netns)   # the published-port scenario
# podman needs a container-network-stack; name it rather than let apt choose among providers.
command -v netavark >/dev/null || [ -x /usr/lib/podman/netavark ] || need+=(netavark)
if [ ${#need[@]} -gt 0 ]; then
  echo "e2e: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi

if [ -z "${FLEET_INIT_BIN:-}" ]; then
  # What ships is the static build; the image has no libc of its own.
  make --no-print-directory static >/dev/null
  FLEET_INIT_BIN="$PWD/target/fleet-init-static"
fi
export FLEET_INIT_BIN
exec python3 e2e/scenarios.py "$@"
