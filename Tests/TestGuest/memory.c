#include "memory.h"
#include "paging.h"
#include "report.h"
#include "zeropage.h"

/* RAM the e820 map withholds: the legacy hole [0x9fc00, 0x100000) of the
 * layout, which the VMM backs but reports as reserved. */
#define LEGACY_HOLE_BYTES 0x60400ul
#define MIB (1ul << 20)

/* Writes a pattern to the 8 bytes at addr, reads it back and restores the
 * old value (the VMM may have put an initrd at the top of RAM). */
static int probe_u64(uint64_t addr)
{
    volatile uint64_t *p = (volatile uint64_t *)addr;
    uint64_t pattern = 0x5a5aa5a5c3c33c3cull ^ addr;
    uint64_t saved = *p;
    *p = pattern;
    uint64_t seen = *p;
    *p = saved;
    return seen == pattern;
}

/* Probes the last 8 bytes of each RAM entry; returns the number probed or
 * -1 after reporting a failure. */
static int probe_ram_tops(const struct e820_entry *e, unsigned n)
{
    int probed = 0;
    for (unsigned i = 0; i < n; i++) {
        if (e[i].type != E820_RAM || e[i].size < 8)
            continue;
        uint64_t top = e[i].addr + e[i].size - 8;
        if (paging_map_gib(top, 0) != 0) {
            report_fail("memory-size", "cannot map 0x%lx to test it (out of page tables)", top);
            return -1;
        }
        if (!probe_u64(top)) {
            report_fail("memory-size", "RAM at 0x%lx expected to read back the written pattern, did not", top);
            return -1;
        }
        probed++;
    }
    return probed;
}

void check_memory_size(const struct guest_params *params)
{
    const struct e820_entry *e;
    unsigned n = zeropage_e820(&e);
    uint64_t ram = 0;
    for (unsigned i = 0; i < n; i++)
        if (e[i].type == E820_RAM)
            ram += e[i].size;

    int probed = probe_ram_tops(e, n);
    if (probed < 0)
        return;

    uint64_t total = ram + LEGACY_HOLE_BYTES;
    if (!params->has_mem_mib) {
        report_skip("memory-size", "testguest.mem_mib not given (e820 RAM + hole = 0x%lx bytes, %d range tops writable)",
                    total, probed);
        return;
    }
    if (total != params->mem_mib * MIB) {
        report_fail("memory-size", "expected %lu MiB (0x%lx bytes), e820 RAM + 0x%lx hole = %lu MiB (0x%lx bytes)",
                    params->mem_mib, params->mem_mib * MIB, LEGACY_HOLE_BYTES, total / MIB, total);
        return;
    }
    report_pass("memory-size", "%lu MiB, top of %d RAM ranges writable", params->mem_mib, probed);
}
