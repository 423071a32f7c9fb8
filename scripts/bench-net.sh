#!/usr/bin/env bash
# virtio-net and vsock throughput: the test guest (testguest.mode=netbench)
# sends and receives a fixed amount of data under the release swiftvm, over a
# TAP (raw Ethernet frames) and over Firecracker's hybrid vsock (one stream on
# a Unix socket). Prints figures; asserts nothing.
#
#   scripts/bench-net.sh [MIB] [--frame BYTES] [--packet BYTES]
#
#   MIB             data per workload and direction (default 64)
#   --frame BYTES   Ethernet frame size for net-tx and net-rx, 60 to 65535
#                   (default 1514, a standard MTU; above it the TAP's MTU is raised)
#   --packet BYTES  vsock payload per packet (guest to host) and per receive
#                   buffer (host to guest), 1 to 65536 (default 4096, Linux's
#                   receive buffer size)
#   SWIFTVM=PATH    (environment) benchmark this swiftvm instead of building
#                   the release one
#
# For each workload: MiB/s from the guest's "NETBENCH READY" line to its
# "NETBENCH DONE" line, and the swiftvm process's CPU time over the same span
# (all threads, from /proc/PID/task/*/schedstat) per GiB moved, split into its
# vCPU thread (the guest itself and its exits) and the rest (the event loop,
# where the devices copy the data). The host end is scripts/lib/bench-net-host.py.
#
# The net workloads need root: they run in a network namespace of their own
# with a TAP in it, removed afterwards; the host's own network is never
# touched. Without root, the script says so and runs the vsock workloads only.
# On a host whose KVM emulates the guest (kvm_pvm), the guest's own
# instructions dominate the vCPU figures; compare the "other" column, and
# builds on the same host only.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
mib=64
frame=1514
packet=4096
while (($#)); do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --frame) frame=${2:?--frame needs a size}; shift 2 ;;
    --packet) packet=${2:?--packet needs a size}; shift 2 ;;
    [0-9]*) mib=$1; shift ;;
    *) echo "bench-net: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $mib =~ ^[0-9]+$ ]] && ((mib >= 1 && mib <= 4096)) || { echo "bench-net: MIB must be 1 to 4096" >&2; exit 2; }
[[ $frame =~ ^[0-9]+$ ]] && ((frame >= 60 && frame <= 65535)) || { echo "bench-net: --frame must be 60 to 65535" >&2; exit 2; }
[[ $packet =~ ^[0-9]+$ ]] && ((packet >= 1 && packet <= 65536)) || { echo "bench-net: --packet must be 1 to 65536" >&2; exit 2; }

command -v python3 >/dev/null || { echo "bench-net: needs python3 for the host side (scripts/lib/bench-net-host.py)" >&2; exit 3; }
[[ -r /dev/kvm && -w /dev/kvm ]] || { echo "bench-net: needs read and write access to /dev/kvm" >&2; exit 3; }

if [[ -n ${SWIFTVM:-} ]]; then
  swiftvm=$SWIFTVM
else
  build_log=$(mktemp)
  if ! swiftvm=$(scripts/build-release.sh 2>"$build_log"); then
    echo "bench-net: the release build of swiftvm failed:" >&2
    tail -n 20 "$build_log" >&2
    rm -f "$build_log"
    exit 1
  fi
  rm -f "$build_log"
fi
make -s -C Tests/TestGuest
guest=Tests/TestGuest/build/swiftvm-testguest
host=scripts/lib/bench-net-host.py

workdir=$(mktemp -d /tmp/swiftvm-bench-net-XXXXXX)
ns=
cleanup() {
  if [[ -n $ns ]]; then ip netns delete "$ns" 2>/dev/null || true; fi
  rm -rf "$workdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A network namespace of our own with tap0 in it (as Tests/SwiftVMTests/NetTests.swift makes one).
net_reason=
if [[ $(id -u) != 0 ]]; then
  net_reason="needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to make a network namespace with a TAP"
elif ! command -v ip >/dev/null; then
  net_reason="needs the ip command (iproute2)"
elif [[ ! -c /dev/net/tun ]]; then
  net_reason="needs /dev/net/tun"
else
  ns=swiftvm-bench-net-$$-$RANDOM
  if ! { ip netns add "$ns" &&
      ip -n "$ns" tuntap add dev tap0 mode tap &&
      ip netns exec "$ns" sh -c 'echo 1 > /proc/sys/net/ipv6/conf/tap0/disable_ipv6' &&
      ip -n "$ns" link set tap0 mtu "$((frame > 1514 ? frame - 14 : 1500))" &&
      ip -n "$ns" link set tap0 up; } 2>"$workdir/ns.err"; then
    net_reason="could not make a network namespace with a TAP: $(head -n1 "$workdir/ns.err")"
  fi
fi

printf 'virtio-net (TAP, %d-byte frames) and vsock (hybrid, %d-byte packets), %d MiB per workload, 1 vCPU, %s\n' \
  "$frame" "$packet" "$mib" "$(uname -r)"
echo "  CPU s/GiB: the VMM's CPU seconds per GiB moved, all threads; then its vCPU thread, and its other threads (the event loop, which moves the data)"
printf '  %-8s %-9s %9s %10s %10s %10s\n' VMM workload "MiB/s" "CPU s/GiB" "vCPU" "other"
failed=0
limit=$((60 + 2 * mib)) # seconds per workload, at least 0.5 MiB/s
for workload in net-tx net-rx vsock-tx vsock-rx; do
  size=$packet
  prefix=()
  if [[ $workload == net-* ]]; then
    if [[ -n $net_reason ]]; then
      printf '  %-8s %-9s %s\n' swiftvm "$workload" "skipped: $net_reason"
      continue
    fi
    size=$frame
    prefix=(ip netns exec "$ns")
  fi
  line=$(timeout $((limit + 30)) "${prefix[@]}" python3 "$host" --kind "$workload" --mib "$mib" --frame "$size" \
    --swiftvm "$swiftvm" --guest "$guest" --iface tap0 --workdir "$workdir" --timeout "$limit" 2>&1 | tail -n1) || true
  if [[ $line != RESULT* ]]; then
    printf '  %-8s %-9s %s\n' swiftvm "$workload" "failed: ${line#FAILED kind=$workload }"
    failed=1
    continue
  fi
  echo "$line" | awk '
    { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END {
      gib = v["bytes"] / 1073741824
      note = ""
      if (v["lost"] + 0 > 0) note = note "  (" v["lost"] " frames lost)"
      if (v["host_bytes"] + 0 != v["bytes"] + 0) note = note "  (host counted " v["host_bytes"] " bytes)"
      printf "  %-8s %-9s %9.1f %10.2f %10.2f %10.2f%s\n", "swiftvm", v["kind"], v["bytes"] / 1048576 / v["seconds"],
        v["cpu"] / gib, v["vcpu"] / gib, v["other"] / gib, note
    }'
done

# QEMU's microvm machine cannot run this guest; say why rather than leave the column out.
qemu_reasons=()
if ! readelf -n "$guest" 2>/dev/null | grep -q 'Xen'; then
  qemu_reasons+=("the test guest has no PVH entry (XEN_ELFNOTE_PHYS32_ENTRY): it is booted through swiftvm's 64-bit Linux boot protocol, and QEMU loads an ELF kernel only through PVH")
fi
qemu_reasons+=("its drivers look for virtio-mmio devices at swiftvm's layout (0xc0001000 + 0x1000*i, GSI 5+i), not microvm's (0xfeb00000 + 0x200*i)")
qemu_reasons+=("for vsock QEMU has only vhost-vsock (the kernel's vhost_vsock, AF_VSOCK on the host), which vhost off excludes, and no Firecracker-style Unix-socket vsock")
if command -v qemu-system-x86_64 >/dev/null; then
  qemu_says=$(timeout 20 qemu-system-x86_64 -M microvm,acpi=on -accel kvm -cpu host -m 64 -smp 1 -nodefaults \
    -no-user-config -display none -serial stdio -kernel "$guest" -append "console=ttyS0 testguest.mode=netbench" \
    </dev/null 2>&1 | head -n1) || true
  printf '  %-8s %-9s %s\n' qemu all "not run: ${qemu_says:-the guest printed nothing under microvm}"
else
  printf '  %-8s %-9s %s\n' qemu all "not run: qemu-system-x86_64 is not installed (apt-get install -y qemu-system-x86)"
fi
for reason in "${qemu_reasons[@]}"; do
  echo "NOTE qemu microvm: $reason."
done
exit $failed
