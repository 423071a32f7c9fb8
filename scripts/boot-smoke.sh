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
#             the images (debugfs, md5sum, e2fsck). With root, a TAP in a
#             network namespace: virtio-net (ping, a TCP transfer); with gcc
#             and python3, vsock both ways.
#   api       swiftvm run as Firecracker, configured only through its API
#             socket (scripts/lib/smoke-host.py): 2 vCPUs come up; a balloon
#             target set over the API is reached by Linux's balloon driver,
#             the VMM's resident memory drops, the balloon deflates again;
#             SendCtrlAltDel makes the guest's init reboot cleanly.
#
# The kernel: on a host with hardware virtualization (vmx/svm, kvm_intel or
# kvm_amd), the stock GuestConfigs kernel. On a host whose KVM only emulates
# guests (kvm_pvm), the TEST kernel (scripts/build-kernel.sh --test-kernel:
# GuestConfigs/test-kernel/*.patch, for such hosts only) with the command-line
# words the emulator needs; a stock kernel given with --kernel there stops in
# early boot, and the script then checks the early boot log only and says so.
# The kernel is cached under ~/.cache/swiftvm; the images are made afresh.
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
  if ! swift build --product swiftvm >/dev/null 2>&1; then
    swift build --product swiftvm >&2 || true  # again, to show why
    echo "boot-smoke: swift build --product swiftvm failed" >&2
    exit 2
  fi
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

extra=$(mktemp -d)
work=$(mktemp -d)
# The console logs (stamped with seconds since exec) and swiftvm's messages
# of each boot go to --keep-logs DIR when asked.
netns=""
finish() {
  if [[ -n $keep_logs ]]; then
    mkdir -p "$keep_logs" && cp "$work"/*.log "$work"/*.err "$work"/*.out "$keep_logs"/ 2>/dev/null || true
  fi
  [[ -z $netns ]] || ip netns delete "$netns" 2>/dev/null || true
  jobs -p | xargs -r kill 2>/dev/null || true
  rm -rf "$extra" "$work"
}
trap finish EXIT
mkdir -p "$extra/etc" "$extra/bin"
cp scripts/lib/smoke-guest.sh "$extra/etc/swiftvm-smoke.sh"
# The guest's vsock tool: BusyBox has none. Static, so the rootfs needs no libc.
vsock_tool=no
if command -v gcc >/dev/null && gcc -static -O2 -o "$extra/bin/smoke-vsock" scripts/lib/smoke-vsock.c 2>"$work/gcc.err"; then
  vsock_tool=yes
fi
# The guest's test command. With 2 vCPUs under an emulating KVM (kvm_pvm), a
# user process now and then dies by a signal (docs/guest-kernels.md); the
# script runs on CPU 0 alone from its start, and if it dies before its checks
# (it creates /run/smoke-started first) it is started again, at most twice,
# with a "SMOKE restarted STATUS" line. One that dies later is not repeated:
# its checks talk to the host, and the host reports what is missing.
smoke_command='for try in 1 2 3; do taskset 1 /bin/sh /etc/swiftvm-smoke.sh; status=$?; '
smoke_command+='[ -e /run/smoke-started ] && break; echo "SMOKE restarted $status"; done'
# Images of this run's own, so that runs at the same time cannot write to
# each other's (building them takes about a second).
rootfs=$(scripts/build-rootfs.sh --output "$work/smoke.ext4" --extra "$extra" \
  --test-command "$smoke_command" 2>/dev/null | tail -n1)
scratch="$work/smoke-scratch.img"
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
  # nofsgsbase: user processes died reading thread-local storage through an
  # FS base of 0 (busybox, "segfault at 0" on mov (%rax) after mov %fs:0),
  # which points at the FS base the kernel keeps with RDFSBASE/WRFSBASE;
  # without them it uses the MSR.
  args+=(--cpu-template GuestConfigs/cpu-templates/no-cx16-no-xsave.json --append noxsave)
  if [[ $test_kernel == yes ]]; then
    args+=(--append "clearcpuid=popcnt,smap initcall_blacklist=ptp_kvm_init nopvspin nofsgsbase")
  fi
fi

# boot NAME ARGS...: runs swiftvm with stdout lines stamped with the seconds
# since exec ("12.34 text"); sets $status. Output in $work/NAME.{log,err}.
boot() {
  local name=$1 start now elapsed line
  shift
  start=${EPOCHREALTIME/./}
  set +e
  "${runner[@]}" timeout "$timeout" "$swiftvm" "$@" 2>"$work/$name.err" | while IFS= read -r line || [[ -n $line ]]; do
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
# (grep reads all its input: with -q it would stop at the first match, and
# pipefail would then report the writer's SIGPIPE as a failure.)
has() { console "$1" | grep -E -- "$2" >/dev/null; }
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
  # How the guest's test script ended, and any process that crashed.
  if grep -qE "SWIFTVM-TEST-EXIT|SMOKE restarted|segfault at|SMOKE segfaults" "$work/$1.log"; then
    echo "NOTE $1: the test script's end and crashes:"
    grep -E "SWIFTVM-TEST-EXIT|SMOKE restarted|segfault at|SMOKE segfaults" "$work/$1.log" | tail -n 8 | sed 's/^/NOTE   /'
  fi
  echo "NOTE $1: swiftvm said:"
  tail -n 12 "$work/$1.err" | sed 's/^/NOTE   /'
}

echo "NOTE kernel: $kernel (${banner:-no version banner})"
echo "NOTE host: hardware virtualization $hardware; test kernel $test_kernel"

# --- boot 1: devices, 1 vCPU, power off --------------------------------------
devices=(--vcpus 1 --drive "id=scratch,path=$scratch,cache=writeback,engine=async"
  --append "smoke.mode=devices smoke.finish=poweroff smoke.token=$token")

# vsock: swiftvm listens on $uds; the guest's outbound connection to port
# 6000 reaches ${uds}_6000, where a host listener answers.
uds="$work/vsock.sock"
if [[ $vsock_tool == yes ]] && command -v python3 >/dev/null; then
  devices+=(--vsock "cid=3,uds=$uds")
  python3 scripts/lib/smoke-host.py vsock-listen "${uds}_6000" SWIFTVM-VSOCK-HOST-REPLY 600 >"$work/vsock-listen.out" &
  # The host's CONNECT, once the guest says it listens.
  (
    for _ in $(seq 600); do
      grep -q "SMOKE vsock-listening" "$work/devices.log" 2>/dev/null && break
      sleep 1
    done
    python3 scripts/lib/smoke-host.py vsock-connect "$uds" 5000 SWIFTVM-VSOCK-ECHO-TEST >"$work/vsock-connect.out"
  ) &
else
  echo "NOTE vsock not checked: it needs gcc (with static glibc) for the guest's tool and python3 for the host's"
fi

# The network: a TAP in a namespace of its own, so nothing outside it is
# touched; swiftvm runs inside the namespace to open it.
runner=()
if [[ $(id -u) -eq 0 ]] && command -v ip >/dev/null && command -v python3 >/dev/null; then
  netns="swiftvm-smoke-$$"
  if ip netns add "$netns" && ip -n "$netns" tuntap add dev tap0 mode tap && ip -n "$netns" link set tap0 up \
    && ip -n "$netns" addr add 172.30.0.1/30 dev tap0; then
    runner=(ip netns exec "$netns")
    devices+=(--net "id=eth0,tap=tap0,mac=06:00:ac:1e:00:02" --append "smoke.net=172.30.0.2/30,172.30.0.1")
    ip netns exec "$netns" python3 scripts/lib/smoke-host.py tcp-receive 172.30.0.1 7000 262144 "$work/tcp.bin" 600 \
      >"$work/tcp-receive.out" &
  else
    echo "NOTE network not checked: could not create a network namespace with a TAP device"
    ip netns delete "$netns" 2>/dev/null || true
    netns=""
  fi
else
  echo "NOTE network not checked: creating a TAP needs root, ip (iproute2) and python3"
fi

boot devices "${args[@]}" "${devices[@]}"
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
  test "$(dd if="$scratch" bs=512 skip=2048 count=1 2>/dev/null | tr -d '\0' | sed -n 1p)" = "SWIFTVM-SMOKE-SECTOR $token"

if [[ -n $netns ]]; then
  check "virtio-net driver: eth0 has the MAC swiftvm gave ($(smoke devices net-mac))" \
    test "$(smoke devices net-mac)" = "06:00:ac:1e:00:02"
  check "ping from the guest to the TAP's end: $(smoke devices net-ping)" test "$(smoke devices net-ping)" = "2 packets received"
  sent=$(smoke devices net-sent)
  got=$(md5sum <"$work/tcp.bin" 2>/dev/null | cut -d' ' -f1)
  check "TCP transfer of 256 KiB from the guest arrived intact ($(cat "$work/tcp-receive.out" 2>/dev/null))" \
    eval '[[ -n $sent && $sent == "$got" && $got == "$(head -c 262144 /bin/busybox | md5sum | cut -d" " -f1)" ]]'
fi
if [[ " ${devices[*]} " == *" --vsock "* ]]; then
  check "vsock, host to guest: CONNECT 5000, OK, echo ($(cat "$work/vsock-connect.out" 2>/dev/null))" \
    grep -q "^ok OK [0-9]* echoed SWIFTVM-VSOCK-ECHO-TEST$" "$work/vsock-connect.out"
  check "vsock, guest to host: port 6000 reached ${uds##*/}_6000 ($(cat "$work/vsock-listen.out" 2>/dev/null))" \
    eval '[[ $(smoke devices vsock-reply) == "reply SWIFTVM-VSOCK-HOST-REPLY" ]] && grep -q "^received SWIFTVM-VSOCK-OUT$" "$work/vsock-listen.out"'
  check "vsock socket file removed when swiftvm exited" test ! -e "$uds"
fi
segfaults=$(smoke devices segfaults)
if [[ ${segfaults:-0} -gt 0 ]]; then
  echo "NOTE devices: user space segfaulted $segfaults time(s) in the guest and was retried"
  [[ $hardware == yes ]] && fail "user space segfaulted on a host with hardware virtualization"
fi
[[ $failed -eq 0 ]] || explain devices

# --- boot 2: 2 vCPUs through Firecracker's API: balloon, Ctrl-Alt-Del ------
# swiftvm started as Firecracker is (no subcommand), configured only over its
# API socket, with the command line the first boot's kernel reported. The
# client sets a balloon target once the guest is up and presses Ctrl-Alt-Del
# at the end; the guest's init reboots cleanly.
before=$failed
failed=0
base=$(console devices | awk '!done && sub(/^Command line: /, "") { print; done = 1 }' | tr ' ' '\n' | grep -v '^smoke\.' | tr '\n' ' ')
template=""
[[ $hardware == no ]] && template=GuestConfigs/cpu-templates/no-cx16-no-xsave.json
python3 - "$kernel" "$rootfs" "${base}smoke.mode=api" "$template" >"$work/api-config.json" <<'PY'
import json, sys
kernel, rootfs, boot_args, template = sys.argv[1:5]
config = {
    "boot-source": {"kernel_image_path": kernel, "boot_args": boot_args},
    "machine-config": {"vcpu_count": 2, "mem_size_mib": 256},
    "drives": [{"drive_id": "rootfs", "path_on_host": rootfs, "is_root_device": True, "is_read_only": False}],
    "balloon": {"amount_mib": 0, "deflate_on_oom": False, "stats_polling_interval_s": 1},
    "entropy": {},
}
if template:
    config["cpu-config"] = json.load(open(template))
print(json.dumps(config))
PY
api_sock="$work/api.sock"
# With 2 vCPUs under an emulating KVM, guest user processes die by a signal
# now and then (docs/guest-kernels.md), wherever they run; a boot whose
# client failed after such a crash is booted once more, and said. Every
# check below then reads that second boot, which must pass them all.
for attempt in 1 2; do
  rm -f "$api_sock"
  python3 scripts/lib/smoke-host.py firecracker "$api_sock" "$work/api.log" "$work/api-config.json" 64 "$timeout" \
    >"$work/api-client.out" 2>&1 &
  client=$!
  boot api --api-sock "$api_sock" --id smoke --boot-timer
  client_status=0
  wait "$client" || client_status=$?
  if ((attempt == 1 && client_status != 0)) && [[ $hardware == no ]] &&
     has api "segfault at|Segmentation fault|SMOKE restarted|SMOKE segfaults [1-9]"; then
    echo "NOTE api: guest user space crashed and the client failed ($(tail -n1 "$work/api-client.out")); booting once more"
    for f in api.log api.err api-client.out; do mv "$work/$f" "$work/first-$f"; done
    continue
  fi
  break
done
stages api
check "Firecracker API: configured over the socket and started ($(head -n1 "$work/api-client.out"))" \
  grep -q "^started Running" "$work/api-client.out"
check "both CPUs came up" has api "smp: Brought up 1 node, 2 CPUs"
check "2 CPUs online in the guest" test "$(smoke api cpus)" = "2 online 0-1"
check "virtio-balloon driver bound" test "$(smoke api balloon-driver)" = 1
threads=$(sed -n 's/^seccomp //p' "$work/api-client.out")
check "seccomp filter on every VMM thread (${threads:-none seen})" \
  eval '[[ $threads == *swiftvm-events=2* && $threads == *swiftvm-vcpu1=2* && $threads == *NIO-* && ! " $threads " =~ =[^2\ ] ]]'
check "balloon: a 64 MiB target set over the API is reached ($(grep -m1 '^balloon' "$work/api-client.out" || tail -n1 "$work/api-client.out"))" \
  grep -q "^balloon target 64 MiB actual 64 MiB" "$work/api-client.out"
mem_before=$(smoke api memtotal-before)
mem_after=$(smoke api memtotal-after)
check "balloon: the guest's MemTotal fell by 64 MiB (${mem_before:-?} kB to ${mem_after:-?} kB)" \
  eval '[[ -n $mem_before && -n $mem_after && $((mem_before - mem_after)) -ge 65536 ]]'
inflated=$(grep -m1 '^balloon target 64 ' "$work/api-client.out" || true)
rss=$(sed -n 's/.*VMM resident \([0-9.]*\) -> \([0-9.]*\) MiB.*/\1 \2/p' <<<"$inflated")
check "balloon: the VMM's resident memory fell by at least 8 MiB (${rss:-?} MiB)" \
  eval '[[ -n $rss ]] && awk "BEGIN { exit !(${rss% *} - ${rss#* } >= 8) }"'
check "balloon: deflated back to 0 ($(grep '^balloon target 0 ' "$work/api-client.out" || echo none))" \
  grep -q "^balloon target 0 MiB actual 0 MiB" "$work/api-client.out"
check "balloon: the guest's MemTotal came back ($(smoke api memtotal-restored) kB)" test "$(smoke api memtotal-restored)" = "$mem_before"
check "SendCtrlAltDel: the guest's init saw Ctrl-Alt-Del and shut down" \
  eval 'has api "init: Ctrl-Alt-Del: rebooting" && has api "init: stopping processes, remounting / read-only"'
check "the guest rebooted: swiftvm exited 0" eval '[[ $status -eq 0 ]] && grep -q "the guest reset the machine" "$work/api.err"'
check "no kernel panic" eval '! has api "Kernel panic"'
if [[ -n $e2fsck ]]; then
  check "the rootfs image is clean after the Ctrl-Alt-Del reboot (e2fsck -fn)" eval '"$e2fsck" -fn "$rootfs" >/dev/null 2>&1'
fi
segfaults=$(smoke api segfaults | tail -n1)
if [[ ${segfaults:-0} -gt 0 ]]; then
  echo "NOTE api: user space segfaulted $segfaults time(s) in the guest"
fi
for stage in devices api; do
  restarts=$(smoke "$stage" restarted | tr '\n' ' ')
  [[ -z $restarts ]] || echo "NOTE $stage: the test script died before its checks and was started again (status $restarts)"
done
[[ $failed -eq 0 ]] || { explain api; sed 's/^/NOTE   client: /' "$work/api-client.out"; }

[[ $before -eq 0 && $failed -eq 0 ]]
