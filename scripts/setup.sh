#!/usr/bin/env bash
# Sets swiftvm up on a fresh machine and runs its self-test: installs the few
# Debian packages it needs, builds swiftvm (release) and the test guest, and
# boots the guest in several machine shapes with `swiftvm selftest`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
bin=$(dirname "$(scripts/build-release.sh)")
make -s -C Tests/TestGuest BUILD="$bin"
echo "swiftvm is at $bin/swiftvm" >&2
exec "$bin/swiftvm" selftest "$@"
