#!/usr/bin/env bash
# Start-up benchmark: exec to exit of the smallest guest
# (Tests/TestGuest/minimal.S: it maps the boot-timer page, writes the
# boot-complete byte and resets through the i8042), 1 vCPU, 128 MiB.
# Prints figures; asserts nothing.
#
#   scripts/bench-startup.sh [RUNS]        (default 50)
#
# Reports, over RUNS sequential runs of the release build:
#   wall ms    exec to exit, as a parent process sees it
#   cpu ms     user + system time of the swiftvm process (guest time included)
#   boot ms    swiftvm's own Guest-boot-time line (VMM start to the guest's write)
#   rss        peak resident memory, split into private memory (beyond the
#              guest RAM the run touched) and file-backed code shared by all VMMs
# and how many microVMs two parallel streams start and stop per second; then
# the same guest started through Firecracker's API (scripts/lib/bench-api.py):
# exec to a listening socket, and InstanceStart to the guest's first write.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}

swift build -c release --static-swift-stdlib --product swiftvm >/dev/null
bin=$(swift build -c release --static-swift-stdlib --show-bin-path)
make -s -C Tests/TestGuest
guest=Tests/TestGuest/build/swiftvm-minimal
args=(run --kernel "$guest" --vcpus 1 --memory 128 --no-rng --no-console-input --log-level debug)

# One warm-up run so page cache and KVM module state do not count.
"$bin/swiftvm" "${args[@]}" </dev/null >/dev/null 2>&1

results=$(mktemp)
trap 'rm -f "$results" "$results.err" "$results.time"' EXIT
TIMEFORMAT="TIME %3R %3U %3S"
for _ in $(seq "$runs"); do
  { time /usr/bin/time -f "RSS %M" "$bin/swiftvm" "${args[@]}" </dev/null >/dev/null 2>"$results.err"; } 2>"$results.time"
  cat "$results.err" "$results.time" |
    awk '/Guest-boot-time/ { boot = $4 / 1000 }
         /VMM memory at exit/ { anon = $(NF-9); beyond = substr($(NF-7), 2); file = $(NF-1) }
         /^RSS/ { rss = $2 }
         /^TIME/ { wall = $2 * 1000; cpu = ($3 + $4) * 1000 }
         END { printf "%.2f %.2f %.2f %d %d %d %d\n", wall, cpu, boot, rss, anon, beyond, file }' >>"$results"
done

echo "swiftvm start-up, $runs runs, 1 vCPU, 128 MiB, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
median=$(sort -n "$results" | awk '{ w[NR] = $1 } END { print w[int((NR + 1) / 2)] }')
awk -v median="$median" '
  { wall += $1; cpu += $2; boot += $3; rss += $4; anon += $5; beyond += $6; file += $7
    if (NR == 1 || $1 < minwall) minwall = $1 }
  END {
    printf "  wall ms   mean %.1f  min %.1f  median %.1f\n", wall / NR, minwall, median
    printf "  cpu ms    mean %.1f\n", cpu / NR
    printf "  boot ms   mean %.1f (VMM start to the guest boot-timer write)\n", boot / NR
    printf "  rss KiB   peak %.0f = private %.0f (%.0f beyond guest RAM) + shared code %.0f\n", rss / NR, anon / NR, beyond / NR, file / NR
  }' "$results"

# Throughput: two streams (the machine has 2 cores) for a fixed count.
count=100
start=$(date +%s.%N)
for stream in 1 2; do
  ( for _ in $(seq $((count / 2))); do "$bin/swiftvm" "${args[@]}" </dev/null >/dev/null 2>&1; done ) &
done
wait
end=$(date +%s.%N)
awk -v n=$count -v s="$start" -v e="$end" 'BEGIN { printf "  rate      %.0f microVMs started and stopped per second (2 parallel streams, %d VMs)\n", n / (e - s), n }'

# The same guest through Firecracker's interface: exec to a listening API
# socket, and InstanceStart to the guest's first write, as a client sees them.
if command -v python3 >/dev/null; then
  python3 scripts/lib/bench-api.py "$bin/swiftvm" "$guest" "$(( runs < 20 ? runs : 20 ))"
else
  echo "NOTE the API figures need python3"
fi
