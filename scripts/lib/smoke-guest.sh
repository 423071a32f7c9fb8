#!/bin/sh
# The guest half of scripts/boot-smoke.sh: its rootfs runs this as the test
# command. It drives each device through Linux's own drivers and prints one
# "SMOKE <fact> <value>" line per fact; the host half judges them and checks
# the disk images afterwards. Words on the kernel command line choose what it
# does:
#   smoke.mode=devices|cpus    the device checks, or only the CPU count
#   smoke.finish=poweroff|reboot
#   smoke.token=WORD           written to the scratch drive, so the host can
#                              tell this run's write from an old one
mode=devices finish=poweroff token=none
for word in $(cat /proc/cmdline); do
    case "$word" in
        smoke.mode=*) mode=${word#smoke.mode=} ;;
        smoke.finish=*) finish=${word#smoke.finish=} ;;
        smoke.token=*) token=${word#smoke.token=} ;;
    esac
done
# Kernel messages would land in the middle of these lines on the shared
# console; they stay in the kernel log (dmesg) instead.
dmesg -n 1

# fact NAME COMMAND...: prints "SMOKE NAME <output>". A command that fails or
# prints nothing is tried again, twice: on a host whose KVM only emulates
# guests, user space segfaults now and then (an emulator limit; the count is
# reported at the end), and one lost process must not read as a device fault.
fact() {
    name=$1
    shift
    for attempt in 1 2 3; do
        out=$("$@") && [ -n "$out" ] && break
        out=""
    done
    echo "SMOKE $name $out"
}

# What each fact runs; each prints one line.
cpus() { echo "$(grep -c ^processor /proc/cpuinfo) online $(cat /sys/devices/system/cpu/online)"; }
virtio_device() {
    driver=none
    [ -e "$1/driver" ] && driver=$(basename "$(readlink "$1/driver")")
    echo "$(basename "$1") device $(cat "$1/device") driver $driver"
}
rng_bytes() { dd if=/dev/hwrng bs=32 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n'; }
write_file() { dd if=/bin/busybox of=/smoke-data bs=64k count=16 conv=fsync 2>/dev/null && checksum; }
checksum() { md5sum </smoke-data | cut -d' ' -f1; }
write_sector() {
    printf 'SWIFTVM-SMOKE-SECTOR %s\n' "$token" | dd of=/dev/vdb bs=512 seek=2048 conv=sync,fsync 2>/dev/null && echo done
}
read_sector() { dd if=/dev/vdb bs=512 skip=2048 count=1 2>/dev/null | head -n1; }

# The CPUs the kernel brought up (nproc would count only those this script
# may run on, and it is kept to CPU 0 next).
fact cpus cpus
# User space on a second vCPU is unreliable under an emulating KVM (kvm_pvm):
# keep this script and its children on CPU 0.
taskset -p 1 $$ >/dev/null 2>&1

if [ "$mode" = devices ]; then
    for dev in /sys/bus/virtio/devices/*; do
        [ -e "$dev/device" ] && fact virtio virtio_device "$dev"
    done

    # Entropy: the hwrng core picked the virtio device, and it hands out bytes.
    fact rng-current cat /sys/class/misc/hw_random/rng_current
    fact rng-bytes rng_bytes

    # The root drive: write a file, fsync it, drop it from the page cache and
    # read it back from the device; the host compares the checksum with the
    # file it finds in the image after the guest powered off. The content is
    # the first MiB of BusyBox (random data costs minutes under emulation).
    fact file-written write_file
    sync
    echo 3 >/proc/sys/vm/drop_caches
    fact file-reread checksum

    # The scratch drive: one raw sector, written with fsync and read back.
    fact sector-written write_sector
    echo 3 >/proc/sys/vm/drop_caches
    fact sector-reread read_sector

    # Interrupts the serial port and the virtio devices delivered (the drivers
    # do not poll). A line reads "  5:  12  IO-APIC  5-edge  virtio0", one
    # count per CPU.
    grep -E 'virtio|ttyS0' /proc/interrupts | awk '{ s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print "SMOKE interrupts " $NF " " s }'
fi

echo "SMOKE segfaults $(dmesg | grep -c 'segfault at')"
echo "SMOKE finish $finish"
# A clean file system for the host's checks: nothing is left to replay.
sync
mount -o remount,ro / 2>/dev/null
case "$finish" in
    reboot) reboot -f ;;
    *) poweroff -f ;;
esac
