#!/usr/bin/env bash
# Runs swiftvm's test suite: unit tests, then KVM integration tests that boot
# the project's test guest under the real swiftvm binary. Tests that need
# something this host lacks (KVM, a built guest kernel) say so in their output.
#   SWIFTVM_TEST_KERNEL=/path/to/vmlinux   also boot a real Linux kernel
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
make -s -C Tests/TestGuest
swift build --build-tests
swift test --skip-build "$@"
