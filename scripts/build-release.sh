#!/usr/bin/env bash
# Builds the release swiftvm the one way every script uses, and prints the
# binary's path on standard output (the build's messages go to standard error).
#
#   scripts/build-release.sh
#
# The binary is a static executable: the Swift runtime, Foundation's parts,
# libseccomp, liburing and glibc are linked in, so there is no dynamic loader,
# no search for shared libraries and no relocation of the binary at exec; its
# pages stay clean and shared between VMMs (docs/performance.md). It needs the
# static archives of libseccomp and liburing (libseccomp-dev, liburing-dev).
# SWIFTVM_SCRATCH picks the build directory (default .build).
set -euo pipefail
cd "$(dirname "$0")/.."
flags=(-c release --static-swift-stdlib -Xswiftc -static-executable --scratch-path "${SWIFTVM_SCRATCH:-.build}")
swift build "${flags[@]}" --product swiftvm >&2
echo "$(swift build "${flags[@]}" --show-bin-path)/swiftvm"
