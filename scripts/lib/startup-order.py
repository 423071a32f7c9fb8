#!/usr/bin/env python3
"""Turns callgrind profiles of `swiftvm run` into the linker's section order.

    startup-order.py BINARY LINK_MAP CALLGRIND_OUT... > startup-order.txt

Each function callgrind saw is found in BINARY (by symbol, or by address for
code without a symbol, such as the compiler's unnamed value-witness thunks),
and the input section that holds it in LINK_MAP (gold's -Map output). The
sections' names are printed in order of first appearance, one per line, for
gold's --section-ordering-file, which places sections by name. A name shared
by several input sections places them all, so a shared name is kept only
when all of its sections together are small (the compiler's unnamed thunks);
plain ".text" and the C libraries' shared names are left where they are.
"""
import bisect
import re
import subprocess
import sys

SHARED_NAME_LIMIT = 16 * 1024


def text_sections(map_path):
    """(address, size, name) of each input section of the output .text."""
    sections = []
    in_memory_map = in_text = False
    pending = None
    with open(map_path, errors="replace") as f:
        for line in f:
            if line.startswith("Memory map"):
                in_memory_map = True
                continue
            if not in_memory_map:
                continue
            if line and not line[0].isspace():
                in_text = line.startswith(".text ") or line.strip() == ".text"
                continue
            if not in_text:
                continue
            m = re.match(r"^ (\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+\S", line)
            if m:
                sections.append((int(m.group(2), 16), int(m.group(3), 16), m.group(1)))
                pending = None
                continue
            m = re.match(r"^ (\S+)\s*$", line)
            if m:
                pending = m.group(1)
                continue
            m = re.match(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+\S", line)
            if m and pending:
                sections.append((int(m.group(1), 16), int(m.group(2), 16), pending))
            pending = None
    sections.sort()
    return sections


def symbols(binary):
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            table.setdefault(parts[2], int(parts[0], 16))
    return table


def called_functions(paths):
    """Function names (or 0x addresses) in order of first mention."""
    seen = {}
    pattern = re.compile(r"^c?fn=\(\d+\) (.*)$")
    for path in paths:
        with open(path, errors="replace") as f:
            for line in f:
                m = pattern.match(line.rstrip("\n"))
                if m:
                    seen.setdefault(re.sub(r"'\d+$", "", m.group(1)), None)
    return list(seen)


def main():
    binary, map_path, profiles = sys.argv[1], sys.argv[2], sys.argv[3:]
    sections = text_sections(map_path)
    starts = [s[0] for s in sections]
    total = {}
    for _, size, name in sections:
        total[name] = total.get(name, 0) + size
    count = {}
    for _, _, name in sections:
        count[name] = count.get(name, 0) + 1
    table = symbols(binary)
    printed = set()
    for function in called_functions(profiles):
        address = int(function, 16) if function.startswith("0x") else table.get(function)
        if address is None:
            continue
        i = bisect.bisect_right(starts, address) - 1
        if i < 0:
            continue
        start, size, name = sections[i]
        if not start <= address < start + max(size, 1) or name in printed:
            continue
        if name == ".text" or (count[name] > 1 and total[name] > SHARED_NAME_LIMIT):
            continue
        printed.add(name)
        print(name)


if __name__ == "__main__":
    main()
