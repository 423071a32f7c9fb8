#!/usr/bin/env bash
# Boot smoke test: a Linux kernel built from GuestConfigs/ boots to user space
# under swiftvm from a BusyBox ext4 rootfs, and its init drives every device
# through Linux's own drivers. Prints one PASS/FAIL line per check, the time
# to each boot stage, and NOTE lines for what it could not check; exits 1 if
# a check failed.
#
#   scripts/boot-smoke.sh [--swiftvm PATH] [--kernel VMLINUX] [--timeout SECONDS] [--keep-logs DIR]
#
# Two boots:
#   devices   1 vCPU: the 8250, i8042, ACPI, virtio-mmio, virtio-blk (root
#             drive and a scratch drive) and virtio-rng drivers probe; the
#             guest writes, fsyncs and re-reads a file, writes a raw sector,
#             reads the hwrng, then powers off (ACPI S5). The host then checks
#             the images (debugfs, md5sum, e2fsck).
#   smp       2 vCPUs: both CPUs come up; the guest reboots (i8042 reset).
#
# The kernel: on a host with hardware virtualization (vmx/svm, kvm_intel or
# kvm_amd), the stock GuestConfigs kernel. On a host whose KVM only emulates
# guests (kvm_pvm), the TEST kernel (scripts/build-kernel.sh --test-kernel:
# GuestConfigs/test-kernel/*.patch, for such hosts only) with the command-line
# words the emulator needs; a stock kernel given with --kernel there stops in
# early boot, and the script then checks the early boot log only and says so.
# Kernel, rootfs and scratch drive are cached under ~/.cache/swiftvm.
set -euo pipefail
cd "$(dirname "$0")/.."

swiftvm=""
kernel=""
timeout=420
keep_logs=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --swiftvm) swiftvm=$2; shift 2 ;;
    --kernel) kernel=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --keep-logs) keep_logs=$2; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "boot-smoke: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$swiftvm" ]]; then
  swift build --product swiftvm >/dev/null
  swiftvm="$(swift build --show-bin-path)/swiftvm"
fi

hardware=no
if grep -qwE 'vmx|svm' /proc/cpuinfo && { [[ -d /sys/module/kvm_intel ]] || [[ -d /sys/module/kvm_amd ]]; }; then
  hardware=yes
fi
if [[ -z "$kernel" ]]; then
  if [[ $hardware == yes ]]; then
    kernel=$(scripts/build-kernel.sh | tail -n1)
  else
    kernel=$(scripts/build-kernel.sh --test-kernel | tail -n1)
  fi
fi
banner=$(grep -a -m1 -o 'Linux version [^ ]*' "$kernel" || true)
test_kernel=no
[[ $banner == *-swiftvm-test ]] && test_kernel=yes

cache=${SWIFTVM_CACHE:-$HOME/.cache/swiftvm}
mkdir -p "$cache/rootfs"
extra=$(mktemp -d)
work=$(mktemp -d)
# The console logs (stamped with seconds since exec) and swiftvm's messages
# of each boot go to --keep-logs DIR when asked.
finish() {
  if [[ -n $keep_logs ]]; then
    mkdir -p "$keep_logs" && cp "$work"/*.log "$work"/*.err "$keep_logs"/ 2>/dev/null || true
  fi
  rm -rf "$extra" "$work"
}
trap finish EXIT
mkdir -p "$extra/etc"
cp scripts/lib/smoke-guest.sh "$extra/etc/swiftvm-smoke.sh"
rootfs=$(scripts/build-rootfs.sh --output "$cache/rootfs/smoke.ext4" --extra "$extra" \
  --test-command '/bin/sh /etc/swiftvm-smoke.sh' 2>/dev/null | tail -n1)
scratch="$cache/rootfs/smoke-scratch.img"
rm -f "$scratch"
truncate -s 8M "$scratch"
token=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')

failed=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failed=1; }
# check NAME COMMAND...: PASS when the command succeeds.
check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}

args=(run --kernel "$kernel" --rootfs "$rootfs" --memory 256 --no-console-input)
if [[ $hardware == no ]]; then
  # What the emulating backend cannot run (see docs/guest-kernels.md): hide
  # CX16 and XSAVE, POPCNT and SMAP, and skip the clock-pairing hypercall.
  args+=(--cpu-template GuestConfigs/cpu-templates/no-cx16-no-xsave.json --append noxsave)
  if [[ $test_kernel == yes ]]; then
    args+=(--append "clearcpuid=popcnt,smap initcall_blacklist=ptp_kvm_init")
  fi
fi

# boot NAME ARGS...: runs swiftvm with stdout lines stamped with the seconds
# since exec ("12.34 text"); sets $status. Output in $work/NAME.{log,err}.
boot() {
  local name=$1 start now elapsed line
  shift
  start=${EPOCHREALTIME/./}
  set +e
  timeout "$timeout" "$swiftvm" "$@" 2>"$work/$name.err" | while IFS= read -r line || [[ -n $line ]]; do
    now=${EPOCHREALTIME/./}
    elapsed=$((now - start))
    printf '%d.%02d %s\n' $((elapsed / 1000000)) $((elapsed / 10000 % 100)) "${line%$'\r'}"
  done >"$work/$name.log"
  status=${PIPESTATUS[0]}
  now=${EPOCHREALTIME/./}
  elapsed=$((now - start))
  ended=$(printf '%d.%02d' $((elapsed / 1000000)) $((elapsed / 10000 % 100)))
  set -e
}
# The console text of run NAME, without time stamps.
console() { cut -d' ' -f2- "$work/$1.log"; }
has() { console "$1" | grep -qE -- "$2"; }
smoke() { console "$1" | sed -n "s/^SMOKE $2 //p"; }
# stages NAME: the time to each boot stage, as one line.
stages() {
  local name=$1 text="" label pattern at
  while IFS='|' read -r label pattern; do
    at=$(grep -m1 -E -- "^[0-9.]+ .*$pattern" "$work/$name.log" | cut -d' ' -f1 || true)
    text+="$label ${at:--} s, "
  done <<'EOF'
first line|.
console|printk: console \[ttyS0\] enabled
drivers|virtio_blk virtio0
root mounted|EXT4-fs \(vda\): mounted filesystem
init|SWIFTVM-ROOTFS-READY
EOF
  echo "STAGE $name: ${text}done $ended s (exit status $status)"
}
explain() {
  echo "NOTE $1: last console lines:"
  tail -n 5 "$work/$1.log" | sed 's/^/NOTE   /'
  echo "NOTE $1: swiftvm said:"
  tail -n 12 "$work/$1.err" | sed 's/^/NOTE   /'
}

echo "NOTE kernel: $kernel (${banner:-no version banner})"
echo "NOTE host: hardware virtualization $hardware; test kernel $test_kernel"

# --- boot 1: devices, 1 vCPU, power off --------------------------------------
boot devices "${args[@]}" --vcpus 1 --drive "id=scratch,path=$scratch,cache=writeback,engine=async" \
  --append "smoke.mode=devices smoke.finish=poweroff smoke.token=$token"
stages devices

check "kernel command line has root=/dev/vda rw" has devices "^Command line: .*root=/dev/vda rw"
check "e820 map as swiftvm built it" has devices "BIOS-e820: \[mem 0x0000000000100000-0x000000000fffffff\] usable"
check "ACPI tables read (MADT)" has devices "ACPI: Using ACPI \(MADT\) for SMP configuration information"
check "serial console enabled" has devices "printk: console \[ttyS0\] enabled"

if [[ $hardware == no && $test_kernel == no ]]; then
  echo "NOTE this host's KVM has no hardware virtualization (kvm_pvm) and $kernel is not the test kernel:"
  echo "NOTE it stopped during early boot; build the test kernel with scripts/build-kernel.sh --test-kernel"
  echo "NOTE last guest line: $(console devices | tail -n1)"
  echo "NOTE swiftvm: $(grep -m1 -E 'error|guest crash' "$work/devices.err" || tail -n1 "$work/devices.err")"
  echo "NOTE not checked here: device drivers, the rootfs, init, the boot timer, power-off and reboot"
  exit $failed
fi

check "8250 driver bound COM1 (ttyS0 at I/O 0x3f8)" has devices "ttyS0 at I/O 0x3f8 \(irq = [0-9]+"
check "i8042 driver found the controller (PNP0303 at 0x60,0x64)" has devices "serio: i8042 KBD port at 0x60,0x64"
check "virtio-blk driver: root drive vda" has devices "virtio_blk virtio0: .*\[vda\]"
check "virtio-blk driver: scratch drive vdb" has devices "virtio_blk virtio1: .*\[vdb\]"
check "ext4 root mounted from vda" has devices "EXT4-fs \(vda\): mounted filesystem"
check "init ran from the rootfs" has devices "SWIFTVM-ROOTFS-READY"
check "boot timer written by the guest" grep -q "Guest-boot-time" "$work/devices.err"
check "1 CPU in the guest" test "$(smoke devices cpus)" = "1 online 0"

drivers=$(smoke devices virtio)
blk=$(grep -c "device 0x0002 driver virtio_blk" <<<"$drivers" || true)
rng=$(grep -c "device 0x0004 driver virtio_rng" <<<"$drivers" || true)
check "virtio bus: 2 block devices bound to virtio_blk (saw $blk)" test "$blk" -eq 2
check "virtio bus: the entropy device bound to virtio_rng (saw $rng)" test "$rng" -eq 1
check "hwrng uses the virtio device ($(smoke devices rng-current))" test "$(smoke devices rng-current)" = virtio_rng.0
bytes=$(smoke devices rng-bytes)
check "hwrng returned 64 bytes, not all zero" eval '[[ ${#bytes} -eq 128 && $bytes =~ [1-9a-f] ]]'

written=$(smoke devices file-written)
reread=$(smoke devices file-reread)
check "file written, fsynced and re-read from the device: same checksum" eval '[[ -n $written && $written == "$reread" ]]'
sector=$(smoke devices sector-reread)
check "raw sector on vdb written and re-read" test "$sector" = "SWIFTVM-SMOKE-SECTOR $token"
while read -r device count; do
  [[ -n $device ]] || continue
  check "$device delivered interrupts ($count)" test "$count" -gt 0
done <<<"$(smoke devices interrupts)"
check "the file is the first MiB of the rootfs's busybox" \
  test "$(head -c 1048576 /bin/busybox | md5sum | cut -d' ' -f1)" = "$written"
check "the guest powered off: swiftvm exited 0" eval '[[ $status -eq 0 ]] && grep -q "the guest powered off" "$work/devices.err"'

# The images after the guest is gone: what it wrote reached the files.
debugfs=$(PATH="$PATH:/sbin:/usr/sbin" command -v debugfs || true)
e2fsck=$(PATH="$PATH:/sbin:/usr/sbin" command -v e2fsck || true)
if [[ -n $debugfs ]]; then
  "$debugfs" -R "dump /smoke-data $work/smoke-data" "$rootfs" >/dev/null 2>&1 || true
  host_sum=$(md5sum <"$work/smoke-data" 2>/dev/null | cut -d' ' -f1 || true)
  check "the rootfs image holds the guest's file (md5 $host_sum)" test "$host_sum" = "$written"
else
  echo "NOTE debugfs (e2fsprogs) missing: the guest's file was not checked in the image"
fi
if [[ -n $e2fsck ]]; then
  check "the rootfs image is clean after the power-off (e2fsck -fn)" eval '"$e2fsck" -fn "$rootfs" >/dev/null 2>&1'
fi
check "the scratch image holds the guest's sector" \
  test "$(dd if="$scratch" bs=512 skip=2048 count=1 2>/dev/null | head -n1)" = "SWIFTVM-SMOKE-SECTOR $token"
segfaults=$(smoke devices segfaults)
if [[ ${segfaults:-0} -gt 0 ]]; then
  echo "NOTE devices: user space segfaulted $segfaults time(s) in the guest and was retried"
  [[ $hardware == yes ]] && fail "user space segfaulted on a host with hardware virtualization"
fi
[[ $failed -eq 0 ]] || explain devices

# --- boot 2: 2 vCPUs, reboot --------------------------------------------------
before=$failed
failed=0
boot smp "${args[@]}" --vcpus 2 --append "smoke.mode=cpus smoke.finish=reboot"
stages smp
check "both CPUs came up" has smp "smp: Brought up 1 node, 2 CPUs"
check "2 CPUs online in the guest" test "$(smoke smp cpus)" = "2 online 0-1"
check "no kernel panic" eval '! has smp "Kernel panic"'
check "the guest rebooted (i8042 reset): swiftvm exited 0" eval '[[ $status -eq 0 ]] && grep -q "the guest reset the machine" "$work/smp.err"'
[[ $failed -eq 0 ]] || explain smp

[[ $before -eq 0 && $failed -eq 0 ]]
