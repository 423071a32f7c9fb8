#!/bin/sh
# The guest half of scripts/boot-smoke.sh: its rootfs runs this as the test
# command. It drives each device through Linux's own drivers and prints one
# "SMOKE <fact> <value>" line per fact; the host half judges them and checks
# the disk images afterwards. Words on the kernel command line choose what it
# does:
#   smoke.mode=devices|cpus|api  the device checks, only the CPU count, or
#                              the CPU count, the balloon and Ctrl-Alt-Del
#                              for a run driven through Firecracker's API
#   smoke.finish=poweroff|reboot
#   smoke.token=WORD           written to the scratch drive, so the host can
#                              tell this run's write from an old one
# Tells the host's wrapper (boot-smoke.sh's test command) that the checks
# began: from here on, a crash is reported, not retried.
: >/run/smoke-started
mode=devices finish=poweroff token=none net_guest="" net_host=""
for word in $(cat /proc/cmdline); do
    case "$word" in
        smoke.mode=*) mode=${word#smoke.mode=} ;;
        smoke.finish=*) finish=${word#smoke.finish=} ;;
        smoke.token=*) token=${word#smoke.token=} ;;
        # smoke.net=GUEST/PREFIX,HOST: eth0's address and the host end's.
        smoke.net=*) net=${word#smoke.net=}; net_guest=${net%,*}; net_host=${net#*,} ;;
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
cpus() {
    count=$(grep -c ^processor /proc/cpuinfo) && online=$(cat /sys/devices/system/cpu/online) || return 1
    echo "$count online $online"
}
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
ping_host() { ping -c 2 -W 10 "$net_host" | grep -o '[0-9]* packets received'; }
send_tcp() { head -c 262144 /bin/busybox | nc "$net_host" 7000 && head -c 262144 /bin/busybox | md5sum | cut -d' ' -f1; }

# The CPUs the kernel brought up (nproc would count only those this script
# may run on: boot-smoke.sh starts it on CPU 0 alone).
fact cpus cpus

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

    # The network: eth0 on the host's TAP, a ping and a TCP transfer whose
    # checksum the host compares with what it received.
    if [ -n "$net_guest" ] && [ -e /sys/class/net/eth0 ]; then
        ip link set eth0 up && ip addr add "$net_guest" dev eth0
        echo "SMOKE net-mac $(cat /sys/class/net/eth0/address)"
        fact net-ping ping_host
        fact net-sent send_tcp
    fi

    # vsock: serve a host CONNECT on port 5000 (echo), then connect out to
    # the host's port 6000.
    if [ -e /dev/vsock ] && [ -x /bin/smoke-vsock ]; then
        /bin/smoke-vsock echo 5000 120 >/tmp/vsock-echo 2>&1 &
        echoer=$!
        # The host connects once it sees the listener is up.
        while ! grep -q listening /tmp/vsock-echo 2>/dev/null && kill -0 $echoer 2>/dev/null; do sleep 1; done
        echo "SMOKE vsock-listening 5000"
        wait $echoer
        echo "SMOKE vsock-echo $(tail -n1 /tmp/vsock-echo)"
        fact vsock-reply /bin/smoke-vsock send 2 6000 SWIFTVM-VSOCK-OUT
    fi

    # Interrupts the serial port and the virtio devices delivered (the drivers
    # do not poll), once every device has been used. A line reads
    # "  5:  12  IO-APIC  5-edge  virtio0", one count per CPU.
    grep -E 'virtio|ttyS0' /proc/interrupts | awk '{ s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print "SMOKE interrupts " $NF " " s }'
fi

if [ "$mode" = api ]; then
    # The balloon: the host sets a target over the API once it sees
    # balloon-ready. Without deflate-on-OOM, Linux's driver takes the pages it
    # gives back out of MemTotal, so the guest sees the balloon too.
    # 24 MiB written to tmpfs and freed first: the host backs those pages
    # (and the allocator hands out recently freed pages first), so the host
    # sees its memory drop when the driver gives them back. More costs
    # minutes under an emulating KVM, where every first touch is slow.
    dd if=/dev/zero of=/tmp/fill bs=1M count=24 2>/dev/null
    rm -f /tmp/fill
    before=$(awk '/^MemTotal/ { print $2 }' /proc/meminfo)
    echo "SMOKE memtotal-before $before"
    echo "SMOKE balloon-ready"
    now=$before
    waited=0
    while [ $((before - now)) -lt 65536 ] && [ $waited -lt 300 ]; do
        sleep 1
        waited=$((waited + 1))
        now=$(awk '/^MemTotal/ { print $2 }' /proc/meminfo)
    done
    echo "SMOKE memtotal-after $now"
    # The host then sets the target back to 0: the driver deflates.
    waited=0
    while [ "$now" -lt "$before" ] && [ $waited -lt 300 ]; do
        sleep 1
        waited=$((waited + 1))
        now=$(awk '/^MemTotal/ { print $2 }' /proc/meminfo)
    done
    echo "SMOKE memtotal-restored $now"
    echo "SMOKE balloon-driver $(ls /sys/bus/virtio/drivers/virtio_balloon 2>/dev/null | grep -c virtio)"
    echo "SMOKE segfaults $(dmesg | grep -c 'segfault at')"
    # Ctrl-Alt-Del from the host: init (BusyBox) gets SIGINT from the kernel
    # and reboots cleanly; this script is stopped on the way.
    sync
    echo "SMOKE waiting-for-ctrl-alt-del"
    sleep 300
    echo "SMOKE no-ctrl-alt-del"
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
