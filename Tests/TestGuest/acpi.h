/* ACPI tables (ACPI 6.x chapter 5) as a hardware-reduced microVM presents
 * them, and the command-line device list used instead when there are none. */
#ifndef TESTGUEST_ACPI_H
#define TESTGUEST_ACPI_H

#include <stdint.h>
#include "cmdline.h"
#include "mptable.h"

#define ACPI_RSDP_LEGACY_ADDR 0xe0000 /* where the VMM writes it */
#define ACPI_TABLES_LIMIT 0x100000    /* every table lies below 1 MiB */

/* What the MADT says, for the smp check when there is no MP table. */
struct acpi_info {
    int found;            /* RSDP, XSDT, FADT and MADT read and valid */
    unsigned cpu_count;   /* enabled Processor Local APIC entries */
    uint8_t apic_ids[MP_MAX_CPUS];
};

/* The `acpi` check (testguest.acpi=1) or the `no-acpi` check
 * (testguest.acpi=0); SKIP when the parameter is absent. */
void check_acpi(const struct guest_params *params, struct acpi_info *info);

/* The MADT's CPUs as an MP table's would be, for check_smp. */
void acpi_cpu_list(const struct acpi_info *info, struct mp_info *mp);

#endif
