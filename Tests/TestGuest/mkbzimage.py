#!/usr/bin/env python3
"""Packs the test guest into a bzImage (Linux boot protocol 2.15).

    mkbzimage.py GUEST_ELF BZIMAGE

GUEST_ELF is the test guest linked with IMAGE_BASE=0x1000200, so that its
64-bit entry (_start, the first byte of its text) sits 0x200 bytes into a
protected-mode part that starts at 16 MiB, where XLF_KERNEL_64 says a
loader enters. The file is a boot sector holding the setup header, one
setup sector (never run: a 64-bit loader skips the real-mode code), then
the protected-mode part: 0x200 bytes of padding and the guest's loadable
segments as they lie in memory. The kernel is not relocatable; it asks to
be loaded at 16 MiB (code32_start and pref_address), and init_size covers
its .bss. Only the fields a 64-bit boot loader reads are filled in.
"""
import struct
import sys

LOAD_ADDRESS = 0x1000000
ENTRY_OFFSET = 0x200
SETUP_SECTS = 1
PT_LOAD = 1


def segments(elf):
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        sys.exit("mkbzimage: not an ELF64 file")
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _, offset, _, paddr, filesz, memsz, _ = struct.unpack_from("<IIQQQQQQ", elf, phoff + i * phentsize)
        if p_type == PT_LOAD and memsz:
            yield paddr, elf[offset:offset + filesz], memsz


def main():
    elf = open(sys.argv[1], "rb").read()
    loads = sorted(segments(elf))
    if not loads or loads[0][0] != LOAD_ADDRESS + ENTRY_OFFSET:
        sys.exit("mkbzimage: the guest must be linked with its text at 0x%x" % (LOAD_ADDRESS + ENTRY_OFFSET))
    end_of_file = max(paddr + len(data) for paddr, data, _ in loads)
    end_of_memory = max(paddr + memsz for paddr, _, memsz in loads)
    protected = bytearray(end_of_file - LOAD_ADDRESS)
    for paddr, data, _ in loads:
        protected[paddr - LOAD_ADDRESS:paddr - LOAD_ADDRESS + len(data)] = data

    boot = bytearray(512 * (1 + SETUP_SECTS))
    boot[0x1f1] = SETUP_SECTS
    struct.pack_into("<H", boot, 0x1fe, 0xAA55)            # boot_flag
    boot[0x200:0x202] = bytes([0xEB, 0x6A])                # jump past the header (to 0x26c)
    boot[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", boot, 0x206, 0x020F)            # version 2.15
    boot[0x211] = 0x01                                     # loadflags: LOADED_HIGH
    struct.pack_into("<I", boot, 0x214, LOAD_ADDRESS)      # code32_start
    struct.pack_into("<I", boot, 0x230, 0x200000)          # kernel_alignment
    boot[0x234] = 0                                        # relocatable_kernel
    struct.pack_into("<H", boot, 0x236, 0x0001)            # xloadflags: XLF_KERNEL_64
    struct.pack_into("<I", boot, 0x238, 2048)              # cmdline_size
    struct.pack_into("<Q", boot, 0x258, LOAD_ADDRESS)      # pref_address
    init_size = (end_of_memory - LOAD_ADDRESS + 0xFFF) & ~0xFFF
    struct.pack_into("<I", boot, 0x260, init_size)         # init_size
    with open(sys.argv[2], "wb") as out:
        out.write(boot)
        out.write(protected)


if __name__ == "__main__":
    main()
