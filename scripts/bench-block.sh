#!/usr/bin/env bash
# virtio-block throughput and host CPU cost: the test guest's blkbench
# workload (sequential and random reads and writes, 4 KiB and 64 KiB
# requests, 1 and 32 in flight) on one drive, under the release swiftvm with
# each io engine and under QEMU's microvm machine with virtio-blk on the same
# image. Prints figures; asserts nothing.
#
#   scripts/bench-block.sh [MIB] [RUNS]   (default 32 MiB per 4 KiB workload, 3 runs; medians)
#
# 64 KiB workloads move 8 x MIB, so that they too last long enough to time.
#
# Columns, per VMM: MiB/s and IOPS over the workload alone, and host CPU
# seconds (user + system of the whole VMM process, vCPU threads included,
# from /proc/PID/stat) per GiB moved during it. Both VMMs are timed the same
# way: from the guest's `BENCH-START` console line, printed just before its
# first request, to its `BENCH` line, printed after the last completion.
#
# The QEMU column needs qemu-system-x86_64 and a test guest with a PVH note
# (QEMU enters the guest through PVH); the guest finds QEMU's virtio-mmio
# transports itself. Where QEMU cannot run the workload the column says
# "n/a" and why. On a host whose KVM emulates the guest (kvm_pvm) every
# guest instruction costs far more than on hardware, and the host CPU
# figures include the guest's own time; compare VMMs on the same host only.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-32}
runs=${2:-3}

swiftvm=$(scripts/build-release.sh 2>/dev/null)
make -s -C Tests/TestGuest
guest=Tests/TestGuest/build/swiftvm-testguest
image=$(mktemp /tmp/swiftvm-bench-XXXXXX.img)
trap 'rm -f "$image"' EXIT
# A written image: reads of a sparse file would only return zero pages.
dd if=/dev/zero of="$image" bs=1M count=1024 status=none

qemu=""
if ! command -v qemu-system-x86_64 >/dev/null; then
  qemu="n/a: qemu-system-x86_64 is not installed"
elif ! readelf -n "$guest" 2>/dev/null | grep -q 'Xen.*0x00000012'; then
  qemu="n/a: the test guest has no PVH note (XEN_ELFNOTE_PHYS32_ENTRY), which QEMU needs to boot it"
fi

python3 - "$swiftvm" "$guest" "$image" "$mib" "$runs" "$qemu" <<'PY'
import os, re, statistics, subprocess, sys, tempfile, time

swiftvm, guest, image, mib, runs, qemu_na = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
hardware = bool(re.search(r"\b(vmx|svm)\b", open("/proc/cpuinfo").read()))

CLK_TCK = os.sysconf("SC_CLK_TCK")

def cpu_seconds(pid):
    """User + system time of the whole process (every thread) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK

def run(argv, timeout=600):
    """Runs a VMM on the workload; returns (seconds, CPU seconds) from the
    guest's BENCH-START line to its BENCH line, or why it could not."""
    # The VMM's own messages go to a file, so they never split a console line.
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
    lines, start, end = [], None, None
    deadline = time.monotonic() + timeout
    try:
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            lines.append(line)
            if line.startswith("BENCH-START"):
                start = (time.monotonic(), cpu_seconds(proc.pid))
            elif line.startswith("BENCH ") and start:
                end = (time.monotonic(), cpu_seconds(proc.pid))
                break
            if time.monotonic() > deadline:
                break
    finally:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out = "".join(lines)
    errors.seek(0)
    stderr = errors.read().decode(errors="replace").strip()
    bench = re.search(r"^BENCH \S+ (\d+) requests, (\d+) bytes, (\d+) failed", out, re.M)
    if not (start and end and bench):
        fail = re.search(r"^FAIL .*$", out, re.M)
        return fail.group(0).strip() if fail else "no BENCH line: " + ((stderr or out).strip().splitlines() or ["no output"])[-1]
    if bench.group(3) != "0":
        return f"{bench.group(3)} requests failed"
    return (end[0] - start[0], end[1] - start[1])

def amount(size):
    return mib if size <= 4096 else mib * 8

def words(kind, size, depth):
    return (f"testguest.mode=blkbench testguest.bench={kind} testguest.bench_frame={size} "
            f"testguest.bench_depth={depth} testguest.bench_mib={amount(size)}")

def swiftvm_once(engine, kind, size, depth):
    return run([swiftvm, "run", "--kernel", guest, "--no-rng", "--no-preflight", "--log-level", "warning",
                "--drive", f"id=bench,path={image},engine={engine}", "--cmdline", words(kind, size, depth)])

qemu_cpu = "host" if hardware else "host,-arch-capabilities"
def qemu_once(kind, size, depth):
    return run(["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm", "-cpu", qemu_cpu, "-m", "128", "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
                "-global", "virtio-mmio.force-legacy=false", "-device", "i8042",
                "-kernel", guest, "-append", "console=ttyS0 " + words(kind, size, depth),
                "-drive", f"id=bench,file={image},format=raw,if=none,cache=writeback",
                "-device", "virtio-blk-device,drive=bench"])

def measure(once):
    results = []
    for _ in range(runs):
        r = once()
        if isinstance(r, str): return r
        results.append(r)
    return statistics.median(w for w, _ in results), statistics.median(c for _, c in results)

print(f"virtio-block, {mib} MiB per 4 KiB workload, {mib * 8} MiB per 64 KiB one, median of {runs} runs, 1 vCPU, Linux {os.uname().release}, "
      f"{'hardware virtualization' if hardware else 'KVM without VMX/SVM (guest emulated)'}")
print(f"  {'workload':<22}" + "".join(f" | {name:^27}" for name in ("sync", "async", "qemu")))
print(f"  {'':<22}" + " | {:>8} {:>8} {:>9}".format("MiB/s", "IOPS", "CPU s/GiB") * 3)
qemu_broken = qemu_na or None
for size in (4096, 65536):
    for depth in (1, 32):
        for kind in ("seqread", "randread", "seqwrite", "randwrite"):
            label = f"{kind} {size // 1024}K qd{depth}"
            cells = []
            for vmm in ("sync", "async", "qemu"):
                if vmm == "qemu":
                    if qemu_broken:
                        cells.append(None)
                        continue
                    r = measure(lambda: qemu_once(kind, size, depth))
                    if isinstance(r, str):
                        qemu_broken = "n/a: " + r
                        cells.append(None)
                        continue
                else:
                    r = measure(lambda: swiftvm_once(vmm, kind, size, depth))
                if isinstance(r, str):
                    cells.append(f"failed: {r}"[:27])
                    continue
                seconds, cpu = r
                moved = amount(size) * (1 << 20)
                if seconds <= 0:
                    cells.append("too short to time")
                    continue
                cells.append("{:>8.1f} {:>8.0f} {:>9.1f}".format(amount(size) / seconds, moved / size / seconds, cpu / (moved / (1 << 30))))
            print(f"  {label:<22}" + "".join(f" | {c if c else 'n/a':>27}" for c in cells), flush=True)
if qemu_broken:
    print(f"  qemu: {qemu_broken}")
PY
