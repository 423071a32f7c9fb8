#!/usr/bin/env python3
"""Start-up figures for swiftvm run as Firecracker (scripts/bench-startup.sh).

  bench-api.py EXEC_MEASURE SWIFTVM GUEST RUNS

Each run starts SWIFTVM --api-sock in a fresh directory and measures, as a
Firecracker client sees it:
  listen     exec to the API socket accepting a connection; the VMM's CPU
             time (all threads, from /proc/PID/task/*/schedstat) and resident
             memory (VmRSS) at that moment
  configure  PUT /boot-source and PUT /machine-config (1 vCPU, 128 MiB)
  start      PUT /actions InstanceStart sent to the guest's boot-timer write,
             taken from the timestamp of the VMM's Guest-boot-time log line
             (the smallest guest writes it with its first instructions), and
             the VMM's CPU time and memory when the reply came
  exit       the process's exit after the guest's reset; peak RSS (wait4)
SWIFTVM runs under EXEC_MEASURE (scripts/lib/exec-measure.c), which reports
its peak RSS: a process started from Python directly would report Python's.
Prints one summary block; asserts nothing.
"""
import datetime
import http.client
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def cpu_ms(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e6


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def put(conn, path, body):
    conn.request("PUT", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    text = response.read()
    if response.status != 204:
        raise RuntimeError(f"PUT {path}: {response.status} {text!r}")


def child_of(pid):
    """The pid of `pid`'s one child, once it has started."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = f.read().split()
            if children:
                return int(children[0])
        except FileNotFoundError:
            pass
        time.sleep(0.0001)
    raise RuntimeError("the VMM did not start")


def one_run(measure, swiftvm, guest):
    with tempfile.TemporaryDirectory(prefix="swiftvm-bench-api-") as directory:
        sock = os.path.join(directory, "api.sock")
        log = os.path.join(directory, "log")
        started = time.monotonic()
        runner = subprocess.Popen(
            [measure, swiftvm, "--api-sock", sock, "--id", "bench", "--boot-timer", "--log-path", log, "--level", "Info"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        pid = child_of(runner.pid)
        conn = UnixHTTPConnection(sock)
        while True:
            try:
                conn.connect()
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() - started > 10:
                    os.kill(pid, 9)
                    raise RuntimeError("no API socket within 10 s")
                time.sleep(0.0002)
        listening = time.monotonic()
        listen = (listening - started) * 1000, cpu_ms(pid), rss_kib(pid)
        put(conn, "/boot-source", f'{{"kernel_image_path": "{guest}"}}')
        put(conn, "/machine-config", '{"vcpu_count": 1, "mem_size_mib": 128}')
        configured = time.monotonic()
        sent = time.time()
        put(conn, "/actions", '{"action_type": "InstanceStart"}')
        replied = time.monotonic()
        start_cpu, start_rss = cpu_ms(pid), rss_kib(pid)
        status, _, _, peak_rss = (int(x) for x in runner.communicate()[0].split())
        ended = time.monotonic()
        boot_ms = None
        with open(log) as f:
            for line in f:
                if "Guest-boot-time" in line:
                    stamp = datetime.datetime.strptime(line.split(" ")[0][:26], "%Y-%m-%dT%H:%M:%S.%f")
                    boot_ms = (stamp.timestamp() - sent) * 1000
        if boot_ms is None:
            raise RuntimeError(f"no Guest-boot-time line (exit status {status})")
        return {
            "listen_ms": listen[0], "listen_cpu": listen[1], "listen_rss": listen[2],
            "configure_ms": (configured - listening) * 1000,
            "reply_ms": (replied - configured) * 1000, "boot_ms": boot_ms,
            "start_cpu": start_cpu, "start_rss": start_rss,
            "exit_ms": (ended - started) * 1000, "peak_rss": peak_rss,
        }


def main(argv):
    measure, swiftvm, guest, runs = argv[0], argv[1], os.path.abspath(argv[2]), int(argv[3])
    one_run(measure, swiftvm, guest)  # warm-up
    results = [one_run(measure, swiftvm, guest) for _ in range(runs)]

    def column(key):
        values = [r[key] for r in results]
        return statistics.mean(values), min(values), statistics.median(values)

    print(f"swiftvm as Firecracker (--api-sock), {runs} runs, 1 vCPU, 128 MiB")
    mean, low, median = column("listen_ms")
    print(f"  exec to listening socket   wall ms mean {mean:.1f}  min {low:.1f}  median {median:.1f};"
          f"  cpu ms {column('listen_cpu')[0]:.1f};  rss KiB {column('listen_rss')[0]:.0f}")
    print(f"  configure (2 PUTs)         wall ms mean {column('configure_ms')[0]:.2f}")
    mean, low, median = column("boot_ms")
    print(f"  InstanceStart to the guest's first write  ms mean {mean:.1f}  min {low:.1f}  median {median:.1f}"
          f"  (the 204 came after {column('reply_ms')[0]:.1f} ms)")
    print(f"  after InstanceStart        cpu ms {column('start_cpu')[0]:.1f};  rss KiB {column('start_rss')[0]:.0f}")
    print(f"  exec to exit               wall ms mean {column('exit_ms')[0]:.1f};  peak rss KiB {column('peak_rss')[0]:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
