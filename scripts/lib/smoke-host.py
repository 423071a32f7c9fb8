#!/usr/bin/env python3
"""The host's half of the network and vsock checks of scripts/boot-smoke.sh.

  smoke-host.py vsock-connect UDS PORT TEXT   Firecracker's host protocol:
        connect to UDS, write "CONNECT PORT\\n", expect "OK <n>\\n", send TEXT,
        shut down the send side, print what the guest echoed
  smoke-host.py vsock-listen PATH REPLY SECONDS   accept one guest connection
        on the Unix socket PATH (<uds>_<port>), read until EOF, answer REPLY;
        print what the guest sent
  smoke-host.py tcp-receive ADDRESS PORT BYTES OUT SECONDS   accept one TCP
        connection, store BYTES bytes in OUT, then close
  smoke-host.py firecracker SOCKET CONSOLE CONFIG BALLOON_MIB SECONDS   drive a
        swiftvm started as Firecracker (--api-sock SOCKET) through its API
        only: PUT every section of the JSON file CONFIG, InstanceStart; once
        the guest's console (the file CONSOLE) says "SMOKE balloon-ready", set
        the balloon to BALLOON_MIB and wait for GET /balloon/statistics to
        report it reached, then back to 0, with the VMM's resident memory; once it says "SMOKE waiting-for-ctrl-alt-del",
        send SendCtrlAltDel. Prints one line per step.

Each prints one result line and exits 0, or prints "error: ..." and exits 1.
"""
import http.client
import json
import os
import signal
import socket
import struct
import sys
import time


def vsock_connect(uds, port, text):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(uds)
        s.sendall(f"CONNECT {port}\n".encode())
        line = b""
        while not line.endswith(b"\n"):
            chunk = s.recv(1)
            if not chunk:
                raise RuntimeError(f"closed before OK (got {line!r})")
            line += chunk
        if not line.startswith(b"OK "):
            raise RuntimeError(f"expected OK <port>, got {line!r}")
        s.sendall(text.encode())
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        print(f"ok {line.decode().strip()} echoed {reply.decode(errors='replace')}")


def vsock_listen(path, reply, seconds):
    if os.path.exists(path):
        os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)
        s.listen(1)
        s.settimeout(seconds)
        conn, _ = s.accept()
        with conn:
            conn.settimeout(30)
            data = b""
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            conn.sendall(reply.encode())
        print(f"received {data.decode(errors='replace')}")
    os.unlink(path)


def tcp_receive(address, port, count, out, seconds):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        s.listen(1)
        s.settimeout(seconds)
        conn, _ = s.accept()
        data = b""
        with conn:
            conn.settimeout(60)
            while len(data) < count:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
        with open(out, "wb") as f:
            f.write(data)
        print(f"received {len(data)} bytes")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def api(conn, method, path, body=None):
    """One request on the keep-alive connection; (status, parsed body)."""
    data = json.dumps(body) if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    text = response.read().decode()
    return response.status, (json.loads(text) if text else None)


def expect(conn, method, path, body=None):
    status, reply = api(conn, method, path, body)
    if status >= 300:
        raise RuntimeError(f"{method} {path} answered {status}: {reply}")
    return reply


def wait_for_console(console, text, deadline, pid):
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise RuntimeError(f"the VMM ended before the guest printed {text!r}")
        try:
            with open(console, errors="replace") as f:
                if text in f.read():
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the guest never printed {text!r}")


def resident_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def seccomp_modes(pid):
    """'name=mode' for each thread of the process, from /proc/PID/task."""
    modes = []
    for task in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{task}/status") as f:
                mode = next((l.split()[1] for l in f if l.startswith("Seccomp:")), "?")
        except FileNotFoundError:
            continue
        modes.append(f"{name}={mode}")
    return modes


def firecracker(socket_path, console, config_path, balloon_mib, seconds):
    deadline = time.monotonic() + seconds
    while not os.path.exists(socket_path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no API socket at {socket_path}")
        time.sleep(0.05)
    with open(config_path) as f:
        config = json.load(f)
    conn = UnixHTTPConnection(socket_path, timeout=60)
    for _ in range(100):  # the file appears at bind(), just before listen()
        try:
            conn.connect()
            break
        except ConnectionRefusedError:
            time.sleep(0.05)
    # The VMM's process: the peer of the API connection. When a step fails,
    # it is stopped, as an orchestrator would, rather than left waiting.
    creds = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid = struct.unpack("3i", creds)[0]
    try:
        drive(conn, pid, console, config, balloon_mib, deadline)
    except Exception:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        raise


def drive(conn, pid, console, config, balloon_mib, deadline):
    info = expect(conn, "GET", "/")
    print(f"api {info['app_name']} {info['state']}", flush=True)
    for section in ("boot-source", "machine-config", "cpu-config", "balloon", "entropy"):
        if section in config:
            expect(conn, "PUT", "/" + section, config[section])
    for disk in config.get("drives", []):
        expect(conn, "PUT", "/drives/" + disk["drive_id"], disk)
    expect(conn, "PUT", "/actions", {"action_type": "InstanceStart"})
    print(f"started {expect(conn, 'GET', '/')['state']}", flush=True)

    wait_for_console(console, "SMOKE balloon-ready", deadline, pid)
    print(f"seccomp {' '.join(seccomp_modes(pid))}", flush=True)
    resident = resident_mib(pid)
    for target in (balloon_mib, 0):
        start = time.monotonic()
        expect(conn, "PATCH", "/balloon", {"amount_mib": target})
        stats = {}
        while time.monotonic() < deadline:
            stats = expect(conn, "GET", "/balloon/statistics")
            if stats.get("actual_mib") == target:
                break
            time.sleep(1)
        now = resident_mib(pid)
        print(f"balloon target {stats.get('target_mib')} MiB actual {stats.get('actual_mib')} MiB "
              f"after {time.monotonic() - start:.0f} s; VMM resident {resident:.1f} -> {now:.1f} MiB; "
              f"guest free memory {stats.get('free_memory', 0) / 1048576:.1f} MiB", flush=True)
        resident = now
        if target:
            # The guest polls its MemTotal slowly under an emulating KVM: the
            # balloon stays inflated until it has seen the drop.
            wait_for_console(console, "SMOKE memtotal-after", deadline, pid)

    wait_for_console(console, "SMOKE waiting-for-ctrl-alt-del", deadline, pid)
    expect(conn, "PUT", "/actions", {"action_type": "SendCtrlAltDel"})
    print("ctrl-alt-del sent", flush=True)


def main(argv):
    try:
        if argv[:1] == ["vsock-connect"] and len(argv) == 4:
            vsock_connect(argv[1], int(argv[2]), argv[3])
        elif argv[:1] == ["vsock-listen"] and len(argv) == 4:
            vsock_listen(argv[1], argv[2], float(argv[3]))
        elif argv[:1] == ["tcp-receive"] and len(argv) == 6:
            tcp_receive(argv[1], int(argv[2]), int(argv[3]), argv[4], float(argv[5]))
        elif argv[:1] == ["firecracker"] and len(argv) == 6:
            firecracker(argv[1], argv[2], argv[3], int(argv[4]), float(argv[5]))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Exception as error:  # one line for the smoke test's log
        print(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
