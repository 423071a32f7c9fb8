#!/usr/bin/env python3
"""The host side of scripts/bench-net.sh: runs swiftvm on the test guest's netbench mode
(Tests/TestGuest/netbench.c) and moves the data on the other end, for one workload.

  bench-net-host.py --kind net-tx|net-rx|vsock-tx|vsock-rx --mib N --frame BYTES \\
                    --swiftvm BIN --guest GUEST [--iface tap0] [--workdir DIR] [--timeout S]

net-*    runs where the TAP is (bench-net.sh runs it in a network namespace of its own) and
         exchanges raw Ethernet frames (ethertype 0x88b5) with the guest through an AF_PACKET
         socket bound to the TAP: net-tx counts the guest's frames, net-rx sends frames to the
         guest's MAC within a window the guest's acknowledgements open.
vsock-*  uses swiftvm's hybrid vsock in WORKDIR: vsock-tx listens on <uds>_5201 and reads the
         guest's stream to its end; vsock-rx connects with "CONNECT 5201" and writes.

Timing runs from the guest's "NETBENCH READY" line (for the rx workloads: from when the host
starts sending) to its "NETBENCH DONE" line. CPU is the swiftvm process's, over the same span,
summed over its threads (/proc/PID/task/*/schedstat, nanoseconds; /proc/PID/task/*/stat when
schedstat is missing), and split into the vCPU threads (swiftvm-vcpu*: the guest and its exits)
and the rest (the event loop, where the devices move the data). The guest holds the machine
after DONE (testguest.finish=hold), so every thread is still there to be read; then swiftvm is
stopped with SIGTERM. Prints one line:

  RESULT kind=K bytes=B seconds=S cpu=C vcpu=V other=O units=U lost=L host_bytes=H
or
  FAILED kind=K <why>
and exits 0 or 1.
"""
import argparse
import ctypes
import errno
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

ETHERTYPE = 0x88B5
DATA_TAG = b"SWIFTVM-NETBENCH"
ACK_TAG = b"SWIFTVM-NETACK.."
TAG_AT = 14
SEQ_AT = TAG_AT + 16
GUEST_MAC = bytes.fromhex("0600ac100002")
HOST_MAC = bytes.fromhex("020000000001")
VSOCK_PORT = 5201
WINDOW = 256  # net-rx frames ahead of the guest's acknowledgement (a TAP queues 500)
SOL_SOCKET = socket.SOL_SOCKET
SO_RCVBUFFORCE = 33
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Failure(Exception):
    pass


def die_with_parent():
    """In the child: SIGTERM when this script dies, so a guest holding its machine never outlives it."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def thread_cpu(pid):
    """(all threads, vCPU threads) CPU time of a process, in seconds."""
    total = vcpu = 0.0
    base = "/proc/%d/task" % pid
    try:
        tids = os.listdir(base)
    except OSError:
        return None
    for tid in tids:
        try:
            with open("%s/%s/comm" % (base, tid)) as f:
                comm = f.read().strip()
            try:
                with open("%s/%s/schedstat" % (base, tid)) as f:
                    seconds = int(f.read().split()[0]) / 1e9
            except (OSError, ValueError, IndexError):
                with open("%s/%s/stat" % (base, tid)) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        except OSError:
            continue  # the thread ended
        total += seconds
        if comm.startswith("swiftvm-vcpu") or comm.endswith("/KVM"):
            vcpu += seconds
    return total, vcpu


class Run:
    """swiftvm with the guest, its console lines and the marks the workload sets."""

    def __init__(self, args, device_args):
        cmdline = ("console=ttyS0 testguest.mode=netbench testguest.bench=%s testguest.bench_mib=%d "
                   "testguest.bench_frame=%d testguest.finish=hold" % (args.kind, args.mib, args.frame))
        command = [args.swiftvm, "run", "--kernel", args.guest, "--no-rng", "--no-console-input",
                   "--memory", "64", "--cmdline", cmdline] + device_args
        self.kind = args.kind
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buffer = b""
        self.lines = []
        self.ready = None
        self.done = None
        self.start = None  # (time, cpu) where timing starts
        self.end = None

    def fileno(self):
        return self.proc.stdout.fileno()

    def mark(self):
        return time.monotonic(), thread_cpu(self.proc.pid)

    def read(self):
        """Reads what swiftvm printed; notes READY and DONE. False at its end of output."""
        try:
            chunk = os.read(self.fileno(), 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self.buffer += chunk
        while b"\n" in self.buffer:
            raw, self.buffer = self.buffer.split(b"\n", 1)
            line = raw.decode(errors="replace").rstrip("\r")
            self.lines.append(line)
            if line.startswith("NETBENCH READY") and self.ready is None:
                self.ready = self.mark()
            elif line.startswith("NETBENCH DONE") and self.done is None:
                self.done = self.mark()
                self.result = dict(word.split("=", 1) for word in line.split()[3:] if "=" in word)
            elif line.startswith("FAIL "):
                raise Failure("the guest says: " + line)
        return True

    def why(self):
        """The likeliest reason in swiftvm's output for a run that went wrong."""
        for line in self.lines:
            if "FAIL" in line or "error" in line.lower():
                return line.strip()
        return self.lines[-1].strip() if self.lines else "no output"

    def stop(self):
        """Stops swiftvm: the guest holds the machine after its results (testguest.finish=hold),
        so that its threads are still there to be measured when DONE comes."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            while self.read():
                pass
        except (Failure, OSError, ValueError):
            pass


def wait(objects, timeout):
    if not objects:
        time.sleep(timeout)
        return []
    return select.select(objects, [], [], timeout)[0]


def deadline_passed(deadline, what, run):
    if time.monotonic() > deadline:
        raise Failure("%s timed out; swiftvm: %s" % (what, run.why()))


def packet_socket(iface):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETHERTYPE))
    sock.bind((iface, ETHERTYPE))
    try:
        sock.setsockopt(SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    except OSError:
        sock.setsockopt(SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.setblocking(False)
    return sock


def net_tx(args, frames):
    sock = packet_socket(args.iface)
    run = Run(args, ["--net", "id=eth0,tap=%s,mac=%s" % (args.iface, GUEST_MAC.hex(":"))])
    got = got_bytes = lost = 0
    expected = 0
    buf = bytearray(70000)
    deadline = time.monotonic() + args.timeout
    try:
        open_output = True
        drain_until = None
        while True:
            deadline_passed(deadline, "net-tx", run)
            if run.done and (got + lost >= frames or time.monotonic() > drain_until):
                break
            for ready in wait([run, sock] if open_output else [sock], 0.2):
                if ready is sock:
                    for _ in range(100000):
                        try:
                            n = sock.recv_into(buf)
                        except BlockingIOError:
                            break
                        if n < SEQ_AT + 4 or buf[TAG_AT:SEQ_AT] != DATA_TAG:
                            continue
                        seq = struct.unpack_from("<I", buf, SEQ_AT)[0]
                        if seq > expected:
                            lost += seq - expected
                        expected = seq + 1
                        got += 1
                        got_bytes += n
                elif open_output and not run.read():
                    open_output = False
            if run.done and drain_until is None:
                drain_until = time.monotonic() + 1.0
            if not open_output and not run.done:
                raise Failure("swiftvm ended before the workload did: " + run.why())
        return run, got_bytes, frames - got
    finally:
        run.stop()
        sock.close()


def net_rx(args, frames):
    sock = packet_socket(args.iface)
    run = Run(args, ["--net", "id=eth0,tap=%s,mac=%s" % (args.iface, GUEST_MAC.hex(":"))])
    frame = bytearray(args.frame)
    frame[0:6] = GUEST_MAC
    frame[6:12] = HOST_MAC
    struct.pack_into("!H", frame, 12, ETHERTYPE)
    frame[TAG_AT:SEQ_AT] = DATA_TAG
    sent = acked = 0
    retries = 0
    buf = bytearray(2048)
    deadline = time.monotonic() + args.timeout
    last_ack = time.monotonic()
    try:
        open_output = True
        while not run.done:
            deadline_passed(deadline, "net-rx", run)
            if run.ready and run.start is None:
                run.start = run.mark()
                last_ack = time.monotonic()
            if run.start is not None:
                while sent < frames and sent - acked < WINDOW:
                    struct.pack_into("<I", frame, SEQ_AT, sent)
                    try:
                        sock.send(frame)
                    except (BlockingIOError, OSError) as error:
                        if isinstance(error, OSError) and error.errno not in (errno.ENOBUFS, errno.EAGAIN):
                            raise
                        retries += 1
                        break
                    sent += 1
                if sent - acked >= WINDOW and time.monotonic() - last_ack > 10:
                    raise Failure("net-rx: no acknowledgement from the guest in 10 s (%d of %d frames acknowledged)"
                                  % (acked, frames))
            blocked = run.start is not None and (sent >= frames or sent - acked >= WINDOW)
            for ready in wait([run, sock] if open_output else [sock], 0.2 if blocked or run.start is None else 0):
                if ready is sock:
                    for _ in range(100000):
                        try:
                            n = sock.recv_into(buf)
                        except BlockingIOError:
                            break
                        if n >= SEQ_AT + 16 and buf[TAG_AT:SEQ_AT] == ACK_TAG:
                            acked = max(acked, struct.unpack_from("<I", buf, SEQ_AT)[0])
                            last_ack = time.monotonic()
                elif open_output and not run.read():
                    open_output = False
            if not open_output and not run.done:
                raise Failure("swiftvm ended before the workload did: " + run.why())
        return run, sent * args.frame, 0
    finally:
        run.stop()
        sock.close()


def stale_socket(uds):
    """Removes a socket a killed swiftvm left in our own work directory."""
    if os.path.exists(uds):
        os.unlink(uds)


def vsock_tx(args):
    uds = os.path.join(args.workdir, "v.sock")
    stale_socket(uds)
    listen_path = "%s_%d" % (uds, VSOCK_PORT)
    stale_socket(listen_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(listen_path)
    listener.listen(4)
    listener.setblocking(False)
    run = Run(args, ["--vsock", "cid=3,uds=%s" % uds])
    conn = None
    host_bytes = 0
    eof = False
    buf = bytearray(1 << 20)
    deadline = time.monotonic() + args.timeout
    try:
        open_output = True
        while not (run.done and (eof or conn is None)):
            deadline_passed(deadline, "vsock-tx", run)
            watched = [listener] + ([conn] if conn and not eof else []) + ([run] if open_output else [])
            for ready in wait(watched, 0.2):
                if ready is listener:
                    try:
                        accepted, _ = listener.accept()
                    except BlockingIOError:
                        continue
                    if conn is None:
                        conn = accepted
                        conn.setblocking(False)
                    else:
                        accepted.close()
                elif ready is conn:
                    for _ in range(10000):
                        try:
                            n = conn.recv_into(buf)
                        except BlockingIOError:
                            break
                        if n == 0:
                            eof = True
                            break
                        host_bytes += n
                elif open_output and not run.read():
                    open_output = False
            if not open_output and not run.done:
                raise Failure("swiftvm ended before the workload did: " + run.why())
        return run, host_bytes, 0
    finally:
        run.stop()
        if conn:
            conn.close()
        listener.close()
        os.unlink(listen_path)


def vsock_rx(args, total):
    uds = os.path.join(args.workdir, "v.sock")
    stale_socket(uds)
    run = Run(args, ["--vsock", "cid=3,uds=%s" % uds])
    conn = None
    answer = b""
    accepted = False
    written = 0
    chunk = memoryview(bytearray(256 << 10))
    deadline = time.monotonic() + args.timeout
    try:
        open_output = True
        while not run.done:
            deadline_passed(deadline, "vsock-rx", run)
            if conn is None and os.path.exists(uds):
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.connect(uds)
                conn.sendall(b"CONNECT %d\n" % VSOCK_PORT)
                conn.setblocking(False)
            if accepted and run.ready and run.start is None:
                run.start = run.mark()
            sending = run.start is not None and written < total
            readers = ([run] if open_output else []) + ([conn] if conn else [])
            writers = [conn] if sending else []
            readable, writable, _ = select.select(readers, writers, [], 0.2 if readers or writers else 0.05)
            for ready in readable:
                if ready is conn:
                    try:
                        data = conn.recv(65536)
                    except BlockingIOError:
                        continue
                    if not accepted:
                        if not data:
                            raise Failure("vsock-rx: swiftvm closed the connection: the guest refused port %d"
                                          % VSOCK_PORT)
                        answer += data
                        if b"\n" in answer:
                            if not answer.startswith(b"OK "):
                                raise Failure("vsock-rx: swiftvm answered %r" % answer)
                            accepted = True
                    elif not data:
                        readers.remove(conn)
                elif open_output and not run.read():
                    open_output = False
            if writable:
                while written < total:
                    try:
                        n = conn.send(chunk[:min(len(chunk), total - written)])
                    except BlockingIOError:
                        break
                    written += n
                if written >= total:
                    conn.shutdown(socket.SHUT_WR)
            if not open_output and not run.done:
                raise Failure("swiftvm ended before the workload did: " + run.why())
        return run, written, 0
    finally:
        run.stop()
        if conn:
            conn.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", required=True, choices=["net-tx", "net-rx", "vsock-tx", "vsock-rx"])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--frame", type=int, required=True)
    parser.add_argument("--swiftvm", required=True)
    parser.add_argument("--guest", required=True)
    parser.add_argument("--iface", default="tap0")
    parser.add_argument("--workdir", default="/tmp")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    # A SIGTERM (bench-net.sh's time limit) unwinds like an error, so swiftvm is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    total = args.mib << 20
    frames = (total + args.frame - 1) // args.frame
    try:
        if args.kind == "net-tx":
            run, host_bytes, missing = net_tx(args, frames)
        elif args.kind == "net-rx":
            run, host_bytes, missing = net_rx(args, frames)
        elif args.kind == "vsock-tx":
            run, host_bytes, missing = vsock_tx(args)
        else:
            run, host_bytes, missing = vsock_rx(args, total)
        start = run.start or run.ready
        if start[1] is None or run.done[1] is None:
            raise Failure("could not read swiftvm's CPU time in /proc")
        seconds = run.done[0] - start[0]
        cpu = run.done[1][0] - start[1][0]
        vcpu = run.done[1][1] - start[1][1]
        print("RESULT kind=%s bytes=%s seconds=%.4f cpu=%.4f vcpu=%.4f other=%.4f units=%s lost=%s host_bytes=%d"
              % (args.kind, run.result.get("bytes", "0"), seconds, cpu, vcpu, cpu - vcpu,
                 run.result.get("units", "0"), int(run.result.get("lost", "0")) + missing, host_bytes))
        return 0
    except Failure as failure:
        print("FAILED kind=%s %s" % (args.kind, failure))
        return 1


if __name__ == "__main__":
    sys.exit(main())
