/* Intel MultiProcessor Specification 1.4 tables: where the VMM tells the
 * guest which CPUs and which IOAPIC exist. */
#ifndef TESTGUEST_MPTABLE_H
#define TESTGUEST_MPTABLE_H

#include <stdint.h>
#include "cmdline.h"

#define MP_MAX_CPUS 64

struct mp_info {
    int found;                /* floating pointer and config table valid */
    uint64_t floating_addr;
    uint64_t config_addr;
    unsigned cpu_count;
    uint8_t apic_ids[MP_MAX_CPUS];
    int bsp_index;            /* index in apic_ids of the entry flagged BP, or -1 */
    unsigned ioapic_count;
    uint32_t ioapic_addr;     /* address of the first IOAPIC listed */
    unsigned irq_entries;     /* I/O plus local interrupt assignments */
};

/* Locates and decodes the tables.  On failure info->found is 0 and
 * problem (if non-NULL) gets a short reason for a FAIL line. */
void mptable_read(struct mp_info *info, const char **problem);

void check_mptable(const struct guest_params *params, struct mp_info *info);

#endif
