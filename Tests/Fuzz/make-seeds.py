#!/usr/bin/env python3
"""Writes the seed corpora under Tests/Fuzz/Corpus/<target>/: a few valid and
edge inputs per fuzz target, laid out as the entry functions in
Tests/Fuzz/Targets read them (see docs/fuzzing.md). Run it again after changing
a layout; it rewrites only the files it names."""
import gzip, json, os, shutil, struct, subprocess, sys, tempfile, zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Corpus")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def put(target, name, data):
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(bytes(data))


class Ram:
    """Guest RAM from address 0, as the virtio targets copy it."""

    def __init__(self):
        self.b = bytearray()

    def at(self, address, data):
        end = address + len(data)
        if len(self.b) < end:
            self.b.extend(b"\0" * (end - len(self.b)))
        self.b[address:end] = data

    def desc(self, table, index, addr, length, flags=0, nxt=0):
        self.at(table + 16 * index, struct.pack("<QIHH", addr, length, flags, nxt))

    def avail(self, ring, heads, flags=0):
        self.at(ring, struct.pack("<HH", flags, len(heads)) + b"".join(struct.pack("<H", h) for h in heads))


NEXT, WRITE, INDIRECT = 1, 2, 4


def queue(n):
    base = 0x400 * n
    return base, base + 0x100, base + 0x200


# split-queue: option byte (bit 0 event index, bit 1 indirect, bits 4-6 log2
# queue size), RAM: table at 0, available ring at 0x800, used ring at 0xc00.
def split_queue():
    r = Ram()
    r.desc(0, 0, 0xd00, 16, NEXT, 1)
    r.desc(0, 1, 0xe00, 32, WRITE)
    r.at(0xd00, b"request header!!")
    r.avail(0x800, [0])
    put("split-queue", "two-descriptors", b"\x40" + r.b)
    put("split-queue", "two-descriptors-event-index", b"\x41" + r.b)
    r = Ram()
    r.desc(0, 0, 0xd00, 48, INDIRECT)
    r.desc(0xd00, 0, 0xe00, 8, NEXT, 1)
    r.desc(0xd00, 1, 0xe10, 8, NEXT, 2)
    r.desc(0xd00, 2, 0xe20, 64, WRITE)
    r.avail(0x800, [0])
    put("split-queue", "indirect", b"\x42" + r.b)
    r = Ram()
    r.desc(0, 0, 0xd00, 8, NEXT, 1)
    r.desc(0, 1, 0xd00, 8, NEXT, 0)
    r.avail(0x800, [0, 1])
    put("split-queue", "loop", b"\x43" + r.b)
    r = Ram()
    for i in range(8):
        r.desc(0, i, 0xd00 + 8 * i, 8, WRITE)
    r.avail(0x800, list(range(8)))
    put("split-queue", "eight-chains", b"\x31" + r.b)
    put("split-queue", "empty", b"\x40")


# virtio-block: option byte (bits 0-1 as above, bit 2 read-only, bit 3
# flush offered), RAM with queue 0 at 0/0x100/0x200.
def block():
    def request(kind, sector, data_len, write_data=None, options=0x03, indirect=False):
        r = Ram()
        d, a, _ = queue(0)
        r.at(0xc00, struct.pack("<IIQ", kind, 0, sector))
        if write_data is not None:
            r.at(0xc10, write_data)
        table = 0xe80 if indirect else d
        data_flags = 0 if write_data is not None else WRITE
        entries = [(0xc00, 16, NEXT, 1)]
        if data_len:
            entries.append((0xc10, data_len, data_flags | NEXT, 2))
        entries.append((0xbff, 1, WRITE, 0))
        if data_len == 0:
            entries[0] = (0xc00, 16, NEXT, 1)
        for i, (addr, length, flags, nxt) in enumerate(entries):
            r.desc(table, i, addr, length, flags, nxt)
        if indirect:
            r.desc(d, 0, table, 16 * len(entries), INDIRECT)
        r.avail(a, [0])
        return bytes([options]) + r.b

    put("virtio-block", "read", request(0, 1, 512))
    put("virtio-block", "write", request(1, 2, 512, b"\xab" * 512))
    put("virtio-block", "write-read-only", request(1, 0, 512, b"\xcd" * 512, options=0x07))
    put("virtio-block", "flush", request(4, 0, 0, options=0x0b))
    put("virtio-block", "get-id", request(8, 0, 20))
    put("virtio-block", "unknown-type", request(0x55, 0, 0))
    put("virtio-block", "read-past-end", request(0, 31, 1024))
    put("virtio-block", "read-indirect", request(0, 3, 512, indirect=True))


# vsock: option byte (bits 0-1, bit 2 host refuses connections), RAM with
# rx queue 0, tx queue 1 and event queue 2 at 0x400·n.
def vsock_header(op, length=0, src_port=1234, dst_port=5000, src_cid=3, dst_cid=2, kind=1, flags=0, buf=65536, fwd=0):
    return struct.pack("<QQIIIHHIII", src_cid, dst_cid, src_port, dst_port, length, kind, op, flags, buf, fwd)


def vsock():
    REQUEST, RESPONSE, RST, SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST = 1, 2, 3, 4, 5, 6, 7

    def packets(pkts, options=0x01, rx=4, events=1):
        r = Ram()
        rd, ra, _ = queue(0)
        td, ta, _ = queue(1)
        ed, ea, _ = queue(2)
        heads, index, addr = [], 0, 0xc00
        for header, payload in pkts:
            heads.append(index)
            r.at(addr, header)
            if payload:
                r.desc(td, index, addr, 44, NEXT, index + 1)
                r.at(addr + 44, payload)
                r.desc(td, index + 1, addr + 44, len(payload))
                index += 2
            else:
                r.desc(td, index, addr, 44)
                index += 1
            addr += 44 + len(payload)
        r.avail(ta, heads)
        for i in range(rx):
            r.desc(rd, i, 0x2000 + 0x100 * i, 0x100, WRITE)
        r.avail(ra, list(range(rx)))
        for i in range(events):
            r.desc(ed, i, 0x3000 + 8 * i, 8, WRITE)
        r.avail(ea, list(range(events)))
        return bytes([options]) + r.b

    put("vsock", "connect-send-shutdown", packets([
        (vsock_header(REQUEST), b""), (vsock_header(RW, 5), b"hello"), (vsock_header(SHUTDOWN, flags=3), b"")]))
    put("vsock", "connect-refused", packets([(vsock_header(REQUEST), b"")], options=0x05))
    put("vsock", "credit", packets([
        (vsock_header(REQUEST), b""), (vsock_header(CREDIT_REQUEST), b""), (vsock_header(CREDIT_UPDATE, buf=16), b"")]))
    put("vsock", "rst-unknown", packets([(vsock_header(RST), b""), (vsock_header(RESPONSE), b"")]))
    put("vsock", "wrong-cid", packets([(vsock_header(REQUEST, src_cid=7, dst_cid=9, kind=2), b"")]))
    put("vsock", "rw-without-connection", packets([(vsock_header(RW, 3), b"abc")], options=0x00))


# virtio-net: option byte (bits 0-1, bit 2 offers a MAC, bit 3 drops
# mergeable receive buffers), a byte holding half the injected frame's
# length, the frame (12-byte virtio-net header first), then RAM with rx
# queue 0 and tx queue 1.
def net_header(flags=0, gso=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0, buffers=1):
    return struct.pack("<BBHHHHH", flags, gso, hdr_len, gso_size, csum_start, csum_offset, buffers)


def net():
    ethernet = bytes.fromhex("ffffffffffff020000000001") + b"\x08\x00" + bytes(range(46))
    frame = net_header() + ethernet

    def seed(options, injected, tx_frames, rx=2, rx_size=1526):
        r = Ram()
        rd, ra, _ = queue(0)
        td, ta, _ = queue(1)
        heads, index, addr = [], 0, 0xc00
        for header, payload in tx_frames:
            heads.append(index)
            r.at(addr, header + payload)
            r.desc(td, index, addr, len(header), NEXT, index + 1)
            r.desc(td, index + 1, addr + len(header), len(payload))
            index += 2
            addr += len(header) + len(payload)
        r.avail(ta, heads)
        for i in range(rx):
            r.desc(rd, i, 0x2000 + 0x800 * i, rx_size, WRITE)
        r.avail(ra, list(range(rx)))
        if len(injected) % 2:
            injected += b"\0"
        return bytes([options, len(injected) // 2]) + injected + r.b

    put("virtio-net", "tx-and-rx", seed(0x05, frame, [(net_header(), ethernet)]))
    put("virtio-net", "tx-checksum", seed(0x01, b"", [(net_header(1, 0, 0, 0, 34, 16), ethernet)]))
    put("virtio-net", "tx-tso4", seed(0x01, b"", [(net_header(1, 1, 54, 1448, 34, 16), ethernet)]))
    put("virtio-net", "rx-small-buffers", seed(0x09, frame, [], rx=4, rx_size=20))
    put("virtio-net", "rx-mergeable-split", seed(0x01, frame, [], rx=3, rx_size=32))
    put("virtio-net", "header-only", seed(0x00, net_header(), [(net_header(), b"")]))


def elf64(entry=0x1000000, segments=((0x1000000, b"\x90" * 32, 64),), machine=62):
    header_size, ph_size = 64, 56
    phoff = header_size
    data_off = phoff + ph_size * len(segments)
    phs, blobs = b"", b""
    for paddr, data, memsz in segments:
        phs += struct.pack("<IIQQQQQQ", 1, 7, data_off + len(blobs), paddr | 0xffffffff80000000, paddr,
                           len(data), memsz, 0x1000)
        blobs += data
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    eh = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, entry, phoff, 0, 0, header_size, ph_size,
                             len(segments), 64, 0, 0)
    return eh + phs + blobs


def arm64_image(text_offset=0x80000, size=0x1000, flags=0xa, body=b"\0" * 64):
    header = struct.pack("<IIQQQQQQ", 0x14000000 | 16, 0, text_offset, size, flags, 0, 0, 0) + b"ARM\x64" + b"\0" * 4
    return header + body


def kernel_loader():
    put("kernel-loader", "vmlinux", elf64(entry=0x100000, segments=((0x100000, b"\x90" * 64, 0x2000),)))
    put("kernel-loader", "vmlinux-two-segments", elf64(entry=0x100000, segments=(
        (0x100000, b"\xf4" * 16, 0x1000), (0x200000, b"\xcc" * 16, 0x100))))
    put("kernel-loader", "vmlinux-too-big", elf64(segments=((0x100000, b"\x90", 0x10000000),)))
    put("kernel-loader", "elf-aarch64", elf64(machine=183))
    put("kernel-loader", "arm64-image", arm64_image())
    put("kernel-loader", "arm64-image-no-size", arm64_image(text_offset=0, size=0, flags=0))
    bz = bytearray(0x400)
    bz[0x1fe:0x200] = b"\x55\xaa"
    bz[0x202:0x206] = b"HdrS"
    bz[0x206:0x208] = struct.pack("<H", 0x020f)
    put("kernel-loader", "bzimage-header", bz)
    put("kernel-loader", "elf-header-only", elf64()[:64])


def kernel_inspect():
    vmlinux = elf64(entry=0x100000, segments=((0x100000, b"Linux version 6.1.0 (fuzz@seed) #1 SMP\0", 0x100),))
    put("kernel-inspect", "vmlinux", vmlinux)
    put("kernel-inspect", "vmlinux.gz", gzip.compress(vmlinux, mtime=0))
    put("kernel-inspect", "gzip-in-gzip", gzip.compress(gzip.compress(b"Linux version 6.1.0\0" * 4, mtime=0), mtime=0))
    put("kernel-inspect", "deflate-raw", zlib.compress(b"abcabcabcabc" * 20, 9)[2:-4])
    put("kernel-inspect", "deflate-stored", zlib.compressobj(0, zlib.DEFLATED, -15).compress(b"stored" * 10)
        + zlib.compressobj(0, zlib.DEFLATED, -15).flush())
    put("kernel-inspect", "arm64-image", arm64_image(body=b"Linux version 6.1.0 (aarch64)\0" + b"\0" * 32))
    bz = bytearray(0x600)
    bz[0x1f1] = 2
    bz[0x1fe:0x200] = b"\x55\xaa"
    bz[0x202:0x206] = b"HdrS"
    bz[0x206:0x208] = struct.pack("<H", 0x020f)
    bz[0x400:0x400 + 10] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"
    put("kernel-inspect", "bzimage", bz)
    put("kernel-inspect", "config", b"# Linux config\nCONFIG_VIRTIO=y\nCONFIG_VIRTIO_MMIO=y\n# CONFIG_ACPI is not set\n"
        b"CONFIG_SERIAL_8250=y\nCONFIG_NR_CPUS=\"64\"\nCONFIG_BLK=m\n")
    put("kernel-inspect", "ikconfig", b"\0" * 16 + b"IKCFG_ST" + gzip.compress(b"CONFIG_VIRTIO_BLK=y\n", mtime=0)
        + b"IKCFG_ED")


def ext4():
    mke2fs = shutil.which("mke2fs") or "/sbin/mke2fs"
    if not os.path.exists(mke2fs):
        print("make-seeds: no mke2fs; ext4 seeds left as they are", file=sys.stderr)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "root")
        for d in ("sbin", "bin", "etc", "lib"):
            os.makedirs(os.path.join(tree, d))
        with open(os.path.join(tree, "bin", "busybox"), "wb") as f:
            f.write(elf64()[:64])
        os.symlink("../bin/busybox", os.path.join(tree, "sbin", "init"))
        os.symlink("busybox", os.path.join(tree, "bin", "sh"))
        with open(os.path.join(tree, "etc", "inittab"), "w") as f:
            f.write("::sysinit:/bin/sh\n")
        variants = {
            "ext4": ["-t", "ext4", "-O", "^has_journal,^resize_inode,extent"],
            "ext2": ["-t", "ext2", "-O", "^resize_inode"],
        }
        for name, options in variants.items():
            image = os.path.join(tmp, name)
            with open(image, "wb") as f:
                f.truncate(64 << 10)
            env = dict(os.environ, E2FSPROGS_FAKE_TIME="1", MKE2FS_DEVICE_SECTSIZE="512")
            subprocess.run([mke2fs, "-q", "-F", "-b", "1024", "-N", "32", "-m", "0", "-E",
                            "root_owner=0:0,nodiscard", "-U", "01234567-89ab-cdef-0123-456789abcdef",
                            "-d", tree] + options + [image, "64"], check=True, env=env)
            data = open(image, "rb").read()
            put("ext4", name, data)
            if name == "ext4":
                put("ext4", "ext4-truncated", data[:4096])
    put("ext4", "zeros", b"\0" * 2048)
    mbr = bytearray(512)
    mbr[446 + 4] = 0x83
    mbr[446 + 8:446 + 16] = struct.pack("<II", 2048, 4096)
    mbr[510:512] = b"\x55\xaa"
    put("ext4", "mbr-partitioned", mbr)


def cpu_template():
    template = os.path.join(REPO, "GuestConfigs", "cpu-templates", "no-cx16-no-xsave.json")
    put("cpu-template", "no-cx16-no-xsave.json", open(template, "rb").read())
    put("cpu-template", "msr.json", json.dumps({"msr_modifiers": [
        {"addr": "0x10", "bitmap": "0b" + "x" * 62 + "01"}]}, indent=1).encode())
    put("cpu-template", "cpuid-leaf7.json", json.dumps({"cpuid_modifiers": [{
        "leaf": "0x7", "subleaf": "0x0", "flags": 1,
        "modifiers": [{"register": "ebx", "bitmap": "0bxxxxxxxxxxxxxxxxxxxxxxxxxxxx0xxx"}]}]}).encode())
    put("cpu-template", "empty.json", b"{}")
    put("cpu-template", "kvm-capabilities.json", b'{"kvm_capabilities": ["!56"], "cpuid_modifiers": []}')


def api():
    routes = ["PUT /boot-source", "PUT /machine-config", "PATCH /machine-config", "PUT /cpu-config",
              "PUT /drives/rootfs", "PATCH /drives/rootfs", "PUT /network-interfaces/eth0",
              "PATCH /network-interfaces/eth0", "PUT /vsock", "PUT /entropy", "PUT /balloon", "PATCH /balloon",
              "PATCH /balloon/statistics", "PUT /serial", "PATCH /vm"]
    limiter = {"bandwidth": {"size": 1048576, "refill_time": 1000, "one_time_burst": 2048},
               "ops": {"size": 100, "refill_time": 100}}
    bodies = {
        "PUT /boot-source": {"kernel_image_path": "/nonexistent/vmlinux", "boot_args": "console=ttyS0",
                             "initrd_path": None},
        "PUT /machine-config": {"vcpu_count": 2, "mem_size_mib": 256, "smt": False, "track_dirty_pages": False},
        "PATCH /machine-config": {"mem_size_mib": 64},
        "PUT /cpu-config": {"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0,
                            "modifiers": [{"register": "ecx", "bitmap": "0bxxxxxxxxxxxxxxxxxx0xxxxxxxxxxxxx"}]}]},
        "PUT /drives/rootfs": {"drive_id": "rootfs", "path_on_host": "/", "is_root_device": True,
                               "is_read_only": False, "cache_type": "Writeback", "io_engine": "Sync",
                               "rate_limiter": limiter},
        "PATCH /drives/rootfs": {"drive_id": "rootfs", "rate_limiter": limiter},
        "PUT /network-interfaces/eth0": {"iface_id": "eth0", "host_dev_name": "tap0",
                                         "guest_mac": "06:00:ac:10:00:02", "rx_rate_limiter": limiter},
        "PATCH /network-interfaces/eth0": {"iface_id": "eth0", "tx_rate_limiter": limiter},
        "PUT /vsock": {"guest_cid": 3, "uds_path": "/tmp/fuzz-vsock.sock"},
        "PUT /entropy": {"rate_limiter": limiter},
        "PUT /balloon": {"amount_mib": 16, "deflate_on_oom": True, "stats_polling_interval_s": 1},
        "PATCH /balloon": {"amount_mib": 8},
        "PATCH /balloon/statistics": {"stats_polling_interval_s": 5},
        "PUT /serial": {"serial_out_path": "/tmp/fuzz-serial"},
        "PATCH /vm": {"state": "Paused"},
    }
    for index, route in enumerate(routes):
        name = route.split()[0].lower() + route.split()[1].replace("/", "-")
        put("api-request", name, bytes([index]) + json.dumps(bodies[route]).encode())
    put("api-request", "free-route", b"\xffGET /vm/config\n")
    put("api-request", "bad-json", bytes([0]) + b'{"kernel_image_path": "a", "boot_args": "\\u00e9\\ud83d\\ude00",')
    put("api-request", "deep-nesting", bytes([1]) + b"[" * 200 + b"]" * 200)
    put("api-request", "numbers", bytes([1]) + b'{"vcpu_count": 1e400, "mem_size_mib": -0.5e-3}')

    config = {
        "boot-source": bodies["PUT /boot-source"],
        "machine-config": bodies["PUT /machine-config"],
        "drives": [bodies["PUT /drives/rootfs"]],
        "network-interfaces": [bodies["PUT /network-interfaces/eth0"]],
        "vsock": bodies["PUT /vsock"],
        "balloon": bodies["PUT /balloon"],
        "entropy": bodies["PUT /entropy"],
    }
    put("config-file", "full.json", json.dumps(config, indent=2).encode())
    put("config-file", "minimal.json", json.dumps({"boot-source": {"kernel_image_path": "/"}}).encode())
    put("config-file", "cpu-config.json", json.dumps({"boot-source": {"kernel_image_path": "/"},
                                                      "cpu-config": bodies["PUT /cpu-config"]}).encode())
    put("config-file", "mmds.json", b'{"boot-source": {"kernel_image_path": "k"}, "mmds-config": {}}')
    put("config-file", "not-object.json", b'[1, "two", {"three": null}, true]')
    put("config-file", "duplicate-keys.json", b'{"boot-source": {}, "boot-source": {"kernel_image_path": "k"}}')


for make in (split_queue, block, vsock, net, kernel_loader, kernel_inspect, ext4, cpu_template, api):
    make()
