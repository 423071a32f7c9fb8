/* Extends the VMM's boot page tables.  At entry only the first GiB is
 * identity-mapped, but the guest needs the MMIO gap (boot timer, IOAPIC,
 * LAPIC in 3..4 GiB) and RAM above it. */
#ifndef TESTGUEST_PAGING_H
#define TESTGUEST_PAGING_H

#include <stdint.h>

#define GIB (1ull << 30)

/* Identity-maps the GiBs that hold the MMIO gap and low RAM above 1 GiB. */
int paging_init(void);

/* Identity-maps the whole GiB containing addr with 2 MiB pages, unless the
 * PDPT already maps it.  Returns 0 on success, -1 when addr is beyond what
 * one PDPT covers or the spare page directories are used up. */
int paging_map_gib(uint64_t addr, int uncached);

#endif
