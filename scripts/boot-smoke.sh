#!/usr/bin/env bash
# Boot smoke test: a kernel built from GuestConfigs/ and a BusyBox ext4 rootfs,
# booted with swiftvm. Prints one PASS/FAIL line per check and what it could
# not check, and exits non-zero if a check failed.
#
#   scripts/boot-smoke.sh [--swiftvm PATH] [--kernel VMLINUX] [--timeout SECONDS]
#
# On a host with hardware virtualization (vmx/svm, kvm_intel or kvm_amd) the
# guest boots to its init, which writes the boot-timer byte, prints
# SWIFTVM-ROOTFS-READY, runs a command and powers off: the script checks all
# of it and the exit status. On a host whose KVM only emulates guests
# (kvm_pvm), a stock kernel stops at its int3 self-test during early boot;
# the script then checks the early boot log and says plainly that it could go
# no further. Kernel and rootfs are cached under ~/.cache/swiftvm.
set -euo pipefail
cd "$(dirname "$0")/.."

swiftvm=""
kernel=""
timeout=600
while [[ $# -gt 0 ]]; do
  case "$1" in
    --swiftvm) swiftvm=$2; shift 2 ;;
    --kernel) kernel=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "boot-smoke: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$swiftvm" ]]; then
  swift build --product swiftvm >/dev/null
  swiftvm="$(swift build --show-bin-path)/swiftvm"
fi

[[ -n "$kernel" ]] || kernel=$(scripts/build-kernel.sh | tail -n1)
cache=${SWIFTVM_CACHE:-$HOME/.cache/swiftvm}
rootfs=$(scripts/build-rootfs.sh --output "$cache/rootfs/smoke.ext4" \
  --test-command 'echo smoke-test: $(uname -sr) on $(nproc) cpus' | tail -n1)

failed=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failed=1; }

hardware=no
if grep -qwE 'vmx|svm' /proc/cpuinfo && { [[ -d /sys/module/kvm_intel ]] || [[ -d /sys/module/kvm_amd ]]; }; then
  hardware=yes
fi

args=(run --kernel "$kernel" --rootfs "$rootfs" --vcpus 2 --memory 256 --no-console-input)
if [[ $hardware == no ]]; then
  # The emulating backend cannot run cmpxchg16b or xsave: hide them.
  args+=(--cpu-template GuestConfigs/cpu-templates/no-cx16-no-xsave.json --append noxsave)
fi
log=$(mktemp) err=$(mktemp)
trap 'rm -f "$log" "$err"' EXIT
set +e
timeout "$timeout" "$swiftvm" "${args[@]}" >"$log" 2>"$err"
status=$?
set -e

grep -q "^Command line: .*root=/dev/vda rw" "$log" && pass "kernel command line has root=/dev/vda rw" || fail "kernel command line: $(grep -m1 '^Command line' "$log" || echo 'not printed')"
grep -q "BIOS-e820: \[mem 0x0000000000100000-0x000000000fffffff\] usable" "$log" && pass "e820 map as swiftvm built it" || fail "e820 map not seen"
grep -q "ACPI: Using ACPI (MADT) for SMP configuration information" "$log" && pass "ACPI tables read (MADT)" || fail "ACPI MADT not used"
grep -q "printk: console \[ttyS0\] enabled" "$log" && pass "serial console enabled" || fail "serial console never enabled"

if [[ $hardware == yes ]]; then
  grep -q "SWIFTVM-ROOTFS-READY" "$log" && pass "init ran from the rootfs" || fail "init never printed SWIFTVM-ROOTFS-READY"
  grep -q "^smoke-test: Linux" "$log" && pass "test command ran: $(grep -m1 '^smoke-test' "$log")" || fail "test command output missing"
  grep -q "SWIFTVM-TEST-EXIT 0" "$log" && pass "test command exited 0" || fail "no SWIFTVM-TEST-EXIT 0"
  grep -q "Guest-boot-time" "$err" && pass "boot timer: $(grep -m1 -o 'Guest-boot-time = .*' "$err")" || fail "no boot-timer write"
  [[ $status -eq 0 ]] && pass "swiftvm exited 0 after the guest powered off" || fail "swiftvm exited $status: $(tail -n3 "$err")"
else
  echo "NOTE this host's KVM has no hardware virtualization (kvm_pvm): the kernel stopped during early boot"
  echo "NOTE last guest line: $(tail -n1 "$log")"
  echo "NOTE swiftvm: $(grep -m1 -E 'error|guest crash' "$err" || tail -n1 "$err")"
  echo "NOTE not checked here: device probing, the rootfs mount, init, the boot timer and a clean poweroff"
fi
exit $failed
