#!/usr/bin/env bash
# Early boot of the same Linux kernel under swiftvm and under QEMU's microvm
# machine, side by side: wall time from exec to the kernel's first console
# line, to its command line, to "printk: console [ttyS0] enabled", and to the
# last line it prints, plus the VMM's peak RSS. Prints figures; asserts nothing.
#
#   scripts/bench-kernel-boot.sh [RUNS]     (default 3)
#
# Both get 1 vCPU, 128 MiB, ACPI, the same command line (with earlyprintk, so
# the first lines appear before the console driver) and, on a host whose KVM
# emulates guests (kvm_pvm), the same CPU restrictions (no CX16, no XSAVE).
# There the kernel stops at its int3 self-test, so "last line" is where both
# VMMs stop; on a hardware host it is when the kernel panics for want of a
# root file system. QEMU needs Debian's qemu-system-x86; it boots the vmlinux
# through its PVH entry (CONFIG_PVH=y in the GuestConfigs kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}

command -v qemu-system-x86_64 >/dev/null || { echo "bench-kernel-boot: needs qemu-system-x86_64 (apt-get install -y qemu-system-x86)" >&2; exit 3; }
swiftvm=$(scripts/build-release.sh 2>/dev/null)
kernel=$(scripts/build-kernel.sh | tail -n1)
cmdline="console=ttyS0 earlyprintk=ttyS0 reboot=k panic=1 nomodule 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.dumbkbd swiotlb=noforce noxsave"

hardware=no
grep -qwE 'vmx|svm' /proc/cpuinfo && hardware=yes
swiftvm_args=(run --kernel "$kernel" --vcpus 1 --memory 128 --cmdline "$cmdline" --no-rng --no-console-input)
qemu_cpu=host
if [[ $hardware == no ]]; then
  swiftvm_args+=(--cpu-template GuestConfigs/cpu-templates/no-cx16-no-xsave.json)
  qemu_cpu=host,-cx16,-xsave
fi
qemu_args=(-M microvm,acpi=on -accel kvm -cpu "$qemu_cpu" -m 128 -smp 1 -nodefaults -no-user-config
  -display none -serial stdio -kernel "$kernel" -append "$cmdline")

# Runs a VMM, timestamps its console lines, and stops it once the console has
# been quiet for 20 s (QEMU pauses instead of exiting on an emulation failure).
measure() {
  python3 - "$@" <<'PY'
import os, select, subprocess, sys, time
start = time.monotonic()
proc = subprocess.Popen(["/usr/bin/time", "-f", "RSS %M"] + sys.argv[1:], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
marks = {"first": None, "cmdline": None, "console": None}
last = None
buffer = b""
while True:
    ready, _, _ = select.select([proc.stdout], [], [], 20.0)
    if not ready:
        break
    chunk = os.read(proc.stdout.fileno(), 65536)
    if not chunk:
        break
    buffer += chunk
    now = time.monotonic() - start
    while b"\n" in buffer:
        line, buffer = buffer.split(b"\n", 1)
        text = line.decode(errors="replace")
        if not text.strip():
            continue
        last = now
        if marks["first"] is None:
            marks["first"] = now
        if "Command line:" in text and marks["cmdline"] is None:
            marks["cmdline"] = now
        if "printk: console [ttyS0] enabled" in text and marks["console"] is None:
            marks["console"] = now
if proc.poll() is None:
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    for child in children:
        os.kill(int(child), 15)
err = proc.communicate()[1].decode(errors="replace")
rss = next((l.split()[1] for l in err.splitlines() if l.startswith("RSS ")), "?")
fmt = lambda v: "-" if v is None else f"{v:.2f}"
print(f"{fmt(marks['first'])} {fmt(marks['cmdline'])} {fmt(marks['console'])} {fmt(last)} {rss}")
PY
}

echo "early Linux boot, $(basename "$(dirname "$kernel")"), 1 vCPU, 128 MiB, $runs runs each, hardware virtualization: $hardware"
printf '  %-8s %10s %10s %10s %10s %10s\n' VMM "first s" "cmdline s" "console s" "last s" "RSS KiB"
for vmm in swiftvm qemu; do
  for _ in $(seq "$runs"); do
    if [[ $vmm == swiftvm ]]; then
      result=$(measure "$swiftvm" "${swiftvm_args[@]}")
    else
      result=$(measure qemu-system-x86_64 "${qemu_args[@]}")
    fi
    read -r first cmd console last rss <<<"$result"
    printf '  %-8s %10s %10s %10s %10s %10s\n' "$vmm" "$first" "$cmd" "$console" "$last" "$rss"
  done
done
