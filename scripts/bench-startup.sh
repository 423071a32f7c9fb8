#!/usr/bin/env bash
# Start-up benchmark: exec to exit of the smallest guest
# (Tests/TestGuest/minimal.S: it maps the boot-timer page, writes the
# boot-complete byte and resets through the i8042), 1 vCPU, 128 MiB, under
#   swiftvm        the release build (scripts/build-release.sh)
#   QEMU microvm   qemu-system-x86_64 -M microvm, when the guest carries a PVH
#                  entry note (the only way QEMU's microvm loads an ELF)
#   floor          scripts/lib/floor-vmm.c: the fewest KVM calls that boot the
#                  guest (VM, TSS, irqchip, PIT, one RAM region, one vCPU)
# run alternately on the same guest file. Prints figures; asserts nothing.
#
#   scripts/bench-startup.sh [RUNS] [CHURN]     (defaults 20 and 48)
#
# SWIFTVM=PATH measures that binary instead of building the release one.
#
# Table (scripts/lib/bench-startup.py): medians with the interquartile range
# and the ratio to the floor of
#   CPU ms    user + system time of the process, guest time included
#   wall ms   spawn to reaped exit, as the parent process sees it
#   max RSS   peak resident memory (wait4)
#   churn     microVMs started and stopped per second, 8 at a time
# Then swiftvm's own figures: its Guest-boot-time line (exec to the guest's
# boot-timer write) and its memory split, and the same guest started through
# Firecracker's API (scripts/lib/bench-api.py): exec to a listening socket,
# InstanceStart to the guest's first write.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
churn=${2:-48}

bin=${SWIFTVM:-$(scripts/build-release.sh)}
make -s -C Tests/TestGuest
guest=$PWD/Tests/TestGuest/build/swiftvm-minimal
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cc -O2 -o "$work/floor-vmm" scripts/lib/floor-vmm.c
cc -O2 -static -o "$work/exec-measure" scripts/lib/exec-measure.c

swiftvm=("$bin" run --kernel "$guest" --vcpus 1 --memory 128 --no-rng --no-console-input)
tab=$'\t'
{
  (IFS=$tab; echo "swiftvm${tab}run${tab}${swiftvm[*]}")
  # QEMU's microvm loads an ELF kernel only through the PVH entry note
  # (XEN_ELFNOTE_PHYS32_ENTRY, type 18); without it QEMU refuses the file.
  # The guest resets through the i8042, which microvm leaves out unless
  # asked; -no-reboot turns the reset into QEMU's exit. Under kvm_pvm (KVM
  # without VMX/SVM) "-cpu host" fails: KVM refuses the IA32_ARCH_CAPABILITIES
  # value QEMU sets, so that MSR is left out.
  qemu=(qemu-system-x86_64 -M microvm -nodefaults -no-user-config -enable-kvm -cpu host,-arch-capabilities
        -m 128 -smp 1)
  if ! command -v qemu-system-x86_64 >/dev/null; then
    echo "QEMU microvm${tab}n/a${tab}qemu-system-x86_64 is not installed"
  elif ! readelf -n "$guest" | grep -A1 -w Xen | grep -Eq '0x00000012|PHYS32'; then
    echo "QEMU microvm${tab}n/a${tab}the guest has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), without which QEMU's microvm cannot load an ELF kernel"
  elif ! kvm=$(printf 'info kvm\nquit\n' | timeout 20 "${qemu[@]}" -display none -S -monitor stdio 2>&1 | tr -d '\r') ||
       ! grep -q 'kvm support: enabled' <<<"$kvm"; then
    echo "QEMU microvm${tab}n/a${tab}QEMU cannot use KVM here: $(grep -aim1 'error\|kvm support' <<<"$kvm" || echo 'no answer')"
  else
    echo "QEMU: $(grep -m1 'kvm support' <<<"$kvm") (-enable-kvm -cpu host,-arch-capabilities)" >&2
    qemu+=(-nographic -kernel "$guest" -serial stdio -device i8042 -no-reboot)
    (IFS=$tab; echo "QEMU microvm${tab}run${tab}${qemu[*]}")
  fi
  echo "C floor${tab}run${tab}$work/floor-vmm${tab}$guest${tab}128"
} >"$work/subjects"

echo "start-up, exec to exit of the minimal guest, 1 vCPU, 128 MiB; $(uname -r), $(nproc) CPUs," \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 scripts/lib/bench-startup.py "$work/exec-measure" "$runs" "$churn" "$work/subjects"

# swiftvm's own view: its boot-timer line, and where its memory goes.
boot=() split=""
for _ in 1 2 3 4 5; do
  "${swiftvm[@]}" --log-level debug </dev/null >/dev/null 2>"$work/log"
  boot+=("$(sed -nE 's/.*Guest-boot-time = ([0-9]+) us.*/\1/p' "$work/log")")
  split=$(sed -nE 's/.*VMM memory at exit: (.*)/\1/p' "$work/log")
done
echo "swiftvm: exec to the guest's boot-timer write: $(printf '%s\n' "${boot[@]}" | sort -n | sed -n 3p) us (median of 5)"
echo "swiftvm: memory at exit (last of those runs): ${split:-the debug line did not reach the log}"

# The same guest through Firecracker's interface: exec to a listening API
# socket, and InstanceStart to the guest's first write, as a client sees them.
python3 scripts/lib/bench-api.py "$work/exec-measure" "$bin" "$guest" "$runs"
