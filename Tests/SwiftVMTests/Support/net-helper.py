#!/usr/bin/env python3
"""Host-side helpers for swiftvm's virtio-net integration tests (Tests/SwiftVMTests/NetTests.swift).

Each runs inside the test's network namespace (ip netns exec NS python3 net-helper.py ...).

exchange [--iface tap0] [--timeout S]
    The host side of the test guest's virtio-net check (Tests/TestGuest/virtio_net.c):
    1. binds an AF_PACKET socket to the TAP and prints READY;
    2. waits for the guest's frame (ethertype 0x88b5, payload "SWIFTVM-NET-TX ...") and
       prints CAPTURED with its source MAC and payload;
    3. prints the TAP's transmit offloads as the kernel reports them (ethtool ioctls),
       which swiftvm set from the guest's features (TUNSETOFFLOAD);
    4. sends the guest one frame, "SWIFTVM-NET-RX " and 1200 bytes of (i * 7) & 0xff,
       and prints SENT.
    Exits 0 after sending, 1 when the guest's frame does not come in time.

hold TAPNAME
    Attaches to the TAP and keeps it, so that swiftvm finds it busy. Prints HOLDING once
    attached, then waits until its standard input closes or it is killed.
"""
import argparse
import ctypes
import fcntl
import os
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
ETHERTYPE_LOCAL = 0x88B5
SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM = 0x16
ETHTOOL_GTSO = 0x1E
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def say(line):
    print(line, flush=True)


def mac_text(raw):
    return ":".join("%02x" % b for b in raw)


def ethtool_value(sock, iface, command):
    """One ETHTOOL_G* query returning struct ethtool_value.data, or None."""
    value = ctypes.create_string_buffer(struct.pack("II", command, 0))
    request = struct.pack("16sP", iface.encode(), ctypes.addressof(value))
    request += b"\0" * (40 - len(request))
    try:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, request)
    except OSError as error:
        say("ETHTOOL-ERROR %s" % error)
        return None
    return struct.unpack("II", value.raw[:8])[1]


def exchange(args):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((args.iface, 0))
    say("READY")

    deadline = time.monotonic() + args.timeout
    guest_mac = None
    while guest_mac is None:
        left = deadline - time.monotonic()
        if left <= 0:
            say("TIMEOUT no frame tagged SWIFTVM-NET-TX in %.0f s" % args.timeout)
            return 1
        sock.settimeout(left)
        try:
            frame = sock.recv(65535)
        except socket.timeout:
            continue
        if len(frame) < 14 or struct.unpack("!H", frame[12:14])[0] != ETHERTYPE_LOCAL:
            continue
        payload = frame[14:].split(b"\0", 1)[0]
        if not payload.startswith(b"SWIFTVM-NET-TX"):
            continue
        guest_mac = frame[6:12]
        say("CAPTURED src=%s dst=%s payload=%s"
            % (mac_text(guest_mac), mac_text(frame[0:6]), payload.decode(errors="replace")))

    csum = ethtool_value(sock, args.iface, ETHTOOL_GTXCSUM)
    tso = ethtool_value(sock, args.iface, ETHTOOL_GTSO)
    say("OFFLOAD tx-csum=%s tso=%s" % (csum, tso))

    payload = b"SWIFTVM-NET-RX " + bytes((i * 7) & 0xFF for i in range(1200))
    reply = guest_mac + bytes.fromhex("020000000001") + struct.pack("!H", ETHERTYPE_LOCAL) + payload
    sock.send(reply)
    say("SENT %d bytes to %s" % (len(reply), mac_text(guest_mac)))
    return 0


def hold(args):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", args.tap.encode(), IFF_TAP | IFF_NO_PI))
    say("HOLDING %s" % args.tap)
    sys.stdin.read()
    os.close(fd)
    return 0


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    exchange_parser = commands.add_parser("exchange")
    exchange_parser.add_argument("--iface", default="tap0")
    exchange_parser.add_argument("--timeout", type=float, default=60.0)
    hold_parser = commands.add_parser("hold")
    hold_parser.add_argument("tap")
    args = parser.parse_args()
    return exchange(args) if args.command == "exchange" else hold(args)


if __name__ == "__main__":
    sys.exit(main())
