#!/usr/bin/env bash
# Writes scripts/lib/startup-order.txt, the functions `swiftvm run` executes
# from exec to exit, which scripts/build-release.sh has the linker place
# together (docs/performance.md, "Code layout").
#
#   scripts/startup-order.sh
#
# It runs the release binary under valgrind's callgrind (apt-get install
# valgrind) on the start-up benchmark's guest, twice: once with the seccomp
# filters, which valgrind cannot load (that run ends at the first thread's
# filter, after the filters were compiled), and once without them, to the
# guest's reset. scripts/lib/startup-order.py finds each function those
# runs executed in the link map and lists its section, in order of first
# appearance, one name per line. Run it again after a change that
# moves much of the start-up path; the figures of scripts/bench-startup.sh
# show whether it was needed.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "startup-order: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
bin=$(scripts/build-release.sh)
make -s -C Tests/TestGuest
guest=$PWD/Tests/TestGuest/build/swiftvm-minimal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# valgrind cannot read the DWARF of a Swift release binary; the symbol table is enough.
strip --strip-debug -o "$work/swiftvm" "$bin"
run=(run --kernel "$guest" --vcpus 1 --memory 128 --no-rng --no-console-input)
valgrind --tool=callgrind --callgrind-out-file="$work/filters.out" "$work/swiftvm" "${run[@]}" \
    >/dev/null 2>"$work/filters.log" || true
valgrind --tool=callgrind --callgrind-out-file="$work/run.out" "$work/swiftvm" "${run[@]}" --no-seccomp \
    >/dev/null 2>"$work/run.log" || { cat "$work/run.log" >&2; exit 1; }
grep -q "the guest reset the machine" "$work/run.log" || {
    echo "startup-order: the guest did not reach its reset under valgrind:" >&2; tail -n 20 "$work/run.log" >&2; exit 1; }
scripts/lib/startup-order.py "$bin" "${SWIFTVM_SCRATCH:-.build}/swiftvm-release.map" "$work/run.out" "$work/filters.out" \
    >"$work/order.txt"
mv "$work/order.txt" scripts/lib/startup-order.txt
echo "startup-order: $(wc -l <scripts/lib/startup-order.txt) sections in scripts/lib/startup-order.txt;" \
    "scripts/build-release.sh relinks with it" >&2
