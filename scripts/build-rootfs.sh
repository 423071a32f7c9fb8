#!/usr/bin/env bash
#
# Build a small ext4 root file system for swiftvm guests from BusyBox,
# without root: mke2fs -d copies a directory tree into the new image.
# Run with --help for usage.
#
set -euo pipefail

readonly PROG=build-rootfs
readonly BUSYBOX_PACKAGE=busybox-static

# Exit statuses.
readonly E_USAGE=2 E_MISSING=3 E_BUILD=5

# Applets the init script and an interactive shell use, linked in /bin.
readonly APPLETS=(
    sh ash cat cp cttyhack devmem dmesg echo grep halt hostname ln ls mkdir mknod
    mount mv poweroff ps reboot rm rmdir sed setsid sleep stty sync test touch
    true false umount uname vi
)

usage() {
    cat <<EOF
Usage: scripts/build-rootfs.sh [OPTIONS]

Build an ext4 root file system image for swiftvm from Debian's $BUSYBOX_PACKAGE
(/bin/busybox), with no root privileges (mke2fs -t ext4 -F -d TREE IMAGE SIZE).
Progress goes to stderr; the last line on stdout is the image's path:

    rootfs=\$(scripts/build-rootfs.sh | tail -n1)
    swiftvm run --kernel vmlinux --rootfs "\$rootfs"

The image holds /bin/busybox and links for the applets init and a shell use,
/sbin/init (BusyBox's init, with /etc/inittab and scripts in /etc/init.d), and
the directories /dev /proc /sys /run /var /etc /tmp /root. At boot init mounts
proc, sysfs and devtmpfs, writes 123 to swiftvm's boot-timer page (busybox
devmem; needs a kernel with CONFIG_DEVMEM=y), prints SWIFTVM-ROOTFS-READY, then
runs a shell on the console (ttyS0) and powers off when it exits.
Ctrl-Alt-Del (Firecracker's SendCtrlAltDel, through the i8042) reboots the
guest cleanly: init stops every process, remounts / read-only, then resets.

Options:
  --output FILE        where to write the image
                       (default: \${SWIFTVM_CACHE:-\$HOME/.cache/swiftvm}/rootfs/rootfs.ext4)
  --size SIZE          image size as mke2fs takes it (default: 32M)
  --extra DIR          copy DIR's contents over the tree (e.g. more programs)
  --test-command CMD   bake CMD into the image: instead of the shell, init runs
                       it with /bin/sh, prints "SWIFTVM-TEST-EXIT <status>"
                       and powers off
  --busybox PATH       the static BusyBox binary (default: /bin/busybox)
  -h, --help           show this help

Needs: mke2fs (Debian's e2fsprogs) and a statically linked BusyBox:
    sudo apt-get install -y e2fsprogs $BUSYBOX_PACKAGE

Exit statuses: 0 built; $E_USAGE bad usage; $E_MISSING a prerequisite is missing;
$E_BUILD mke2fs failed.
EOF
}

log() { echo "$PROG: $*" >&2; }
die() {
    local status=$1
    shift
    log "$*"
    exit "$status"
}

output="${SWIFTVM_CACHE:-$HOME/.cache/swiftvm}/rootfs/rootfs.ext4"
size=32M
extra=""
test_command=""
have_test_command=0
busybox=/bin/busybox

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h | --help) usage; exit 0 ;;
        --output | --size | --extra | --test-command | --busybox)
            [[ $# -ge 2 ]] || die $E_USAGE "$1 needs a value (see --help)"
            case "$1" in
                --output) output=$2 ;;
                --size) size=$2 ;;
                --extra) extra=$2 ;;
                --test-command) test_command=$2; have_test_command=1 ;;
                --busybox) busybox=$2 ;;
            esac
            shift 2
            ;;
        *) die $E_USAGE "unknown argument: $1 (see --help)" ;;
    esac
done

[[ "$size" =~ ^[0-9]+[KMG]?$ ]] || die $E_USAGE "--size must look like 32M, 65536K or 1G; got \"$size\""
[[ -z "$extra" || -d "$extra" ]] || die $E_USAGE "--extra: $extra is not a directory"
[[ $have_test_command -eq 0 || -n "$test_command" ]] || die $E_USAGE "--test-command needs a non-empty command"

mke2fs=$(PATH="$PATH:/sbin:/usr/sbin" command -v mke2fs || true)
[[ -n "$mke2fs" ]] || die $E_MISSING "mke2fs is missing; install it with: sudo apt-get install -y e2fsprogs"
if [[ ! -x "$busybox" ]]; then
    die $E_MISSING "$busybox is missing; install it with: sudo apt-get install -y $BUSYBOX_PACKAGE"
fi
# A dynamically linked BusyBox (Debian's plain busybox package) would need its
# libraries in the image too; the static build needs nothing else.
if command -v readelf >/dev/null && readelf -l "$busybox" 2>/dev/null | grep -q "program interpreter"; then
    die $E_MISSING "$busybox is dynamically linked; install the static one with: sudo apt-get install -y $BUSYBOX_PACKAGE"
fi
for applet in init devmem cttyhack setsid poweroff reboot mount; do
    "$busybox" --list | grep -qx "$applet" || log "note: $busybox has no $applet applet; the init script's use of it will fail"
done

tree=$(mktemp -d "${TMPDIR:-/tmp}/swiftvm-rootfs.XXXXXX")
trap 'rm -rf "$tree"' EXIT

mkdir -p "$tree"/{bin,sbin,dev,proc,sys,run,var,etc,tmp,root}
chmod 1777 "$tree/tmp"
cp "$busybox" "$tree/bin/busybox"
chmod 0755 "$tree/bin/busybox"
for applet in "${APPLETS[@]}"; do
    ln -s busybox "$tree/bin/$applet"
done

# PID 1 is BusyBox's init, driven by /etc/inittab: it runs the scripts below,
# reaps orphans, and turns Ctrl-Alt-Del (SIGINT from the kernel, which init
# asks for) and "reboot"/"poweroff" into an orderly shutdown.
ln -s /bin/busybox "$tree/sbin/init"
mkdir -p "$tree/etc/init.d"
cat >"$tree/etc/inittab" <<'EOF'
# BusyBox init's table for a swiftvm guest (made by scripts/build-rootfs.sh).
::sysinit:/etc/init.d/rcS
::once:/etc/init.d/main
::ctrlaltdel:/etc/init.d/ctrlaltdel
::shutdown:/etc/init.d/shutdown
EOF
cat >"$tree/etc/init.d/rcS" <<'EOF'
#!/bin/sh
# Mount the kernel's file systems and tell the VMM that user space is up.
export PATH=/bin:/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# The kernel mounts devtmpfs itself with CONFIG_DEVTMPFS_MOUNT; mount it if not.
mountpoint -q /dev 2>/dev/null || mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
# swiftvm's boot timer (Firecracker's convention): byte 123 at the start of its
# MMIO page, 0xc0000000 on x86_64 and 0x40000000 on aarch64. Needs /dev/mem.
case "$(uname -m)" in
    aarch64) boot_timer=0x40000000 ;;
    *) boot_timer=0xc0000000 ;;
esac
devmem "$boot_timer" 8 123 2>/dev/null || echo "init: cannot write the boot timer (no /dev/mem?)"
echo SWIFTVM-ROOTFS-READY
EOF
cat >"$tree/etc/init.d/main" <<'EOF'
#!/bin/sh
# The test command baked into the image, or a shell on the console (ttyS0);
# the machine powers off when it ends.
export PATH=/bin:/sbin HOME=/root
if [ -f /etc/swiftvm-test-command ]; then
    /bin/sh /etc/swiftvm-test-command
    echo "SWIFTVM-TEST-EXIT $?"
else
    setsid cttyhack /bin/sh -l
fi
poweroff
EOF
cat >"$tree/etc/init.d/ctrlaltdel" <<'EOF'
#!/bin/sh
echo "init: Ctrl-Alt-Del: rebooting"
/bin/reboot
EOF
cat >"$tree/etc/init.d/shutdown" <<'EOF'
#!/bin/sh
# Before init stops every process: stop them here first, so that / can be
# remounted read-only and nothing is left for the journal to replay.
echo "init: stopping processes, remounting / read-only"
kill -TERM -1 2>/dev/null
sleep 1
kill -KILL -1 2>/dev/null
sync
mount -o remount,ro /
EOF
chmod 0755 "$tree/etc/init.d/rcS" "$tree/etc/init.d/main" "$tree/etc/init.d/ctrlaltdel" "$tree/etc/init.d/shutdown"
if [[ $have_test_command -eq 1 ]]; then
    printf '%s\n' "$test_command" >"$tree/etc/swiftvm-test-command"
fi
echo "swiftvm" >"$tree/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$tree/etc/passwd"
printf 'root:x:0:\n' >"$tree/etc/group"
# mountpoint is used by init; link it only when this BusyBox has it.
if "$busybox" --list | grep -qx mountpoint; then ln -s busybox "$tree/bin/mountpoint"; fi

if [[ -n "$extra" ]]; then
    log "copying $extra over the tree"
    cp -a "$extra/." "$tree/"
fi

mkdir -p "$(dirname "$output")"
rm -f "$output"
log "writing $output ($size)"
if ! "$mke2fs" -q -t ext4 -F -b 4096 -L rootfs -E root_owner=0:0 -d "$tree" "$output" "$size" >&2; then
    rm -f "$output"
    die $E_BUILD "mke2fs failed; a larger --size may help"
fi
echo "$(cd "$(dirname "$output")" && pwd)/$(basename "$output")"
