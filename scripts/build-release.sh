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
#
# Every function gets a section of its own, and the linker places the ones
# that `swiftvm run` executes together, in the order listed in
# scripts/lib/startup-order.txt (scripts/startup-order.sh writes it): the
# code a start touches then fills fewer pages, so it costs fewer page faults
# and less resident memory. A name the list has and the binary lacks is
# skipped, so a stale list costs speed, never a build. The link map, which
# the list is made from, is written beside the build (swiftvm-release.map).
# SWIFTVM_SCRATCH picks the build directory (default .build).
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=${SWIFTVM_SCRATCH:-.build}
mkdir -p "$scratch"
flags=(-c release --static-swift-stdlib -Xswiftc -static-executable --scratch-path "$scratch"
    -Xswiftc -Xfrontend -Xswiftc -function-sections -Xcc -ffunction-sections
    -Xlinker --section-ordering-file -Xlinker "$PWD/scripts/lib/startup-order.txt"
    -Xlinker -Map -Xlinker "$(cd "$scratch" && pwd)/swiftvm-release.map")
bin="$(swift build "${flags[@]}" --show-bin-path)/swiftvm"
# SwiftPM does not always recompile a module when only -Xswiftc flags
# change, and modules built without function sections cannot be placed:
# a change of flags starts the release build over.
stamp="$scratch/release-flags"
if [[ ! -f $stamp || "$(cat "$stamp")" != "${flags[*]}" ]]; then
    rm -rf "$(dirname "$bin")"
    echo "${flags[*]}" >"$stamp"
fi
# SwiftPM does not know the list is an input of the link: a newer list relinks.
[[ -f $bin && scripts/lib/startup-order.txt -nt $bin ]] && rm -f "$bin"
swift build "${flags[@]}" --product swiftvm >&2
echo "$bin"
