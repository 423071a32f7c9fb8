#!/usr/bin/env bash
# virtio-block throughput: the test guest issues 4 KiB requests to one drive
# (sequential and random, reads and writes) under the release swiftvm, with
# each io engine. Prints figures; asserts nothing.
#
#   scripts/bench-block.sh [MIB]     (default 64 MiB moved per workload)
#
# For each engine and workload: MiB/s over the workload (from the guest's
# boot-timer write, which it makes just before its first request, to exit)
# and the host CPU seconds of the whole swiftvm process (user + system).
# On a host whose KVM emulates the guest (kvm_pvm), the guest's own
# instructions dominate; compare engines and builds on the same host only.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-64}

swift build -c release --static-swift-stdlib --product swiftvm >/dev/null
bin=$(swift build -c release --static-swift-stdlib --show-bin-path)
make -s -C Tests/TestGuest
guest=Tests/TestGuest/build/swiftvm-testguest
image=$(mktemp /tmp/swiftvm-bench-XXXXXX.img)
trap 'rm -f "$image"' EXIT
truncate -s 1G "$image"

printf 'virtio-block, 4 KiB requests, %d MiB per workload, 1 vCPU, %s\n' "$mib" "$(uname -r)"
printf '  %-6s %-10s %10s %10s\n' engine workload "MiB/s" "CPU s"
for engine in sync async; do
  for workload in seqread randread seqwrite randwrite; do
    start=$(date +%s%N)
    log=$(/usr/bin/time -f "CPU %U %S" "$bin/swiftvm" run --kernel "$guest" --no-rng --no-preflight \
      --drive "id=bench,path=$image,engine=$engine" \
      --cmdline "testguest.mode=blkbench testguest.bench=$workload testguest.bench_mib=$mib" </dev/null 2>&1) || {
      printf '  %-6s %-10s %s\n' "$engine" "$workload" "failed: $(echo "$log" | grep -m1 error || echo "$log" | tail -n1)"
      continue
    }
    end=$(date +%s%N)
    echo "$log" | awk -v mib="$mib" -v start="$start" -v end="$end" -v engine="$engine" -v workload="$workload" '
      /Guest-boot-time/ { boot_us = $4 }
      /^BENCH/ && $7 != "0" { failed = $7 }
      /^CPU/ { cpu = $2 + $3 }
      END {
        seconds = (end - start) / 1e9 - boot_us / 1e6
        if (failed) { printf "  %-6s %-10s %s\n", engine, workload, failed " requests failed"; exit }
        printf "  %-6s %-10s %10.1f %10.2f\n", engine, workload, mib / seconds, cpu
      }'
  done
done
