#include "paging.h"
#include "io.h"

#define PTE_PRESENT 0x01
#define PTE_WRITE 0x02
#define PTE_PWT 0x08
#define PTE_PCD 0x10
#define PTE_LARGE 0x80 /* 2 MiB page in a PD entry */
#define PTE_ADDR_MASK 0x000ffffffffff000ull
#define ENTRIES 512
#define SPARE_PDS 8 /* 1..3 GiB plus a few GiB of RAM above 4 GiB */

static uint64_t spare_pd[SPARE_PDS][ENTRIES] __attribute__((aligned(4096)));
static unsigned spare_used;

/* The guest runs identity-mapped, so table addresses are usable as
 * pointers directly. */
static uint64_t *boot_pdpt(void)
{
    uint64_t *pml4 = (uint64_t *)(read_cr3() & PTE_ADDR_MASK);
    return (uint64_t *)(pml4[0] & PTE_ADDR_MASK);
}

int paging_map_gib(uint64_t addr, int uncached)
{
    uint64_t gib = addr / GIB;
    if (gib >= ENTRIES)
        return -1;
    uint64_t *pdpt = boot_pdpt();
    if (pdpt[gib] & PTE_PRESENT)
        return 0;
    if (spare_used == SPARE_PDS)
        return -1;

    uint64_t *pd = spare_pd[spare_used++];
    uint64_t flags = PTE_PRESENT | PTE_WRITE | PTE_LARGE | (uncached ? PTE_PCD | PTE_PWT : 0);
    for (uint64_t i = 0; i < ENTRIES; i++)
        pd[i] = (gib * GIB + (i << 21)) | flags;
    pdpt[gib] = (uint64_t)pd | PTE_PRESENT | PTE_WRITE;
    /* Not-present entries are never cached, but a CR3 reload makes the
     * ordering explicit and costs nothing here. */
    write_cr3(read_cr3());
    return 0;
}

int paging_init(void)
{
    if (paging_map_gib(1 * GIB, 0) || paging_map_gib(2 * GIB, 0))
        return -1;
    return paging_map_gib(3 * GIB, 1); /* device registers: uncached */
}
