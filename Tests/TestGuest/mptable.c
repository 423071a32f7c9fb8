#include "mptable.h"
#include "io.h"
#include "kstring.h"
#include "print.h"
#include "report.h"

#define MPF_SIGNATURE "_MP_"
#define MPC_SIGNATURE "PCMP"
#define MPC_HEADER_BYTES 44
#define IOAPIC_DEFAULT_ADDR 0xfec00000u

enum mp_entry_type { MP_PROCESSOR = 0, MP_BUS, MP_IOAPIC, MP_IOINT, MP_LOCALINT };

#define MP_CPU_ENABLED 0x01
#define MP_CPU_BSP 0x02

/* Floating pointer structure (MP spec 4.1). */
struct mp_floating {
    char signature[4];
    uint32_t config_addr;
    uint8_t length; /* in 16-byte paragraphs */
    uint8_t spec_rev;
    uint8_t checksum;
    uint8_t features[5];
} __attribute__((packed));

/* Configuration table header (MP spec 4.2). */
struct mp_config {
    char signature[4];
    uint16_t base_length;
    uint8_t spec_rev;
    uint8_t checksum;
    char oem[8];
    char product[12];
    uint32_t oem_table;
    uint16_t oem_table_size;
    uint16_t entry_count;
    uint32_t lapic_addr;
    uint16_t ext_length;
    uint8_t ext_checksum;
    uint8_t reserved;
} __attribute__((packed));

static uint8_t byte_sum(const uint8_t *p, uint64_t n)
{
    uint8_t sum = 0;
    while (n--)
        sum += *p++;
    return sum;
}

/* Scans [start, start+len) on 16-byte boundaries, as the spec requires. */
static const struct mp_floating *scan(uint64_t start, uint64_t len)
{
    for (uint64_t a = start; a + sizeof(struct mp_floating) <= start + len; a += 16) {
        const struct mp_floating *f = (const struct mp_floating *)a;
        if (memcmp(f->signature, MPF_SIGNATURE, 4) == 0 && f->length == 1 &&
            byte_sum((const uint8_t *)f, 16) == 0)
            return f;
    }
    return 0;
}

/* Search order of MP spec 4.0: first KiB of the EBDA, last KiB of base
 * memory, then the BIOS ROM area.  The BIOS data area words are 0 under a
 * VMM that has no BIOS, so fall back to 639 KiB of base memory. */
static const struct mp_floating *find_floating(void)
{
    const struct mp_floating *f = 0;
    uint64_t ebda = (uint64_t)*(volatile uint16_t *)phys_ptr(0x40e) << 4;
    uint64_t base_kib = *(volatile uint16_t *)phys_ptr(0x413);
    if (base_kib < 1 || base_kib > 640)
        base_kib = 640;
    if (ebda)
        f = scan(ebda, 1024);
    if (!f)
        f = scan(base_kib * 1024 - 1024, 1024);
    if (!f)
        f = scan(0xf0000, 0x10000);
    return f;
}

static void record_processor(struct mp_info *info, const uint8_t *e)
{
    if (!(e[3] & MP_CPU_ENABLED) || info->cpu_count >= MP_MAX_CPUS)
        return;
    if (e[3] & MP_CPU_BSP)
        info->bsp_index = (int)info->cpu_count;
    info->apic_ids[info->cpu_count++] = e[1];
}

/* Walks the base table entries; returns 0 or a reason. */
static const char *walk_entries(struct mp_info *info, const struct mp_config *c)
{
    const uint8_t *e = (const uint8_t *)c + MPC_HEADER_BYTES;
    const uint8_t *end = (const uint8_t *)c + c->base_length;
    for (unsigned i = 0; i < c->entry_count; i++) {
        unsigned size = e[0] == MP_PROCESSOR ? 20 : 8;
        if (e + size > end)
            return "entries run past base_table_length";
        switch (e[0]) {
        case MP_PROCESSOR:
            record_processor(info, e);
            break;
        case MP_IOAPIC:
            if (info->ioapic_count++ == 0)
                info->ioapic_addr = *(const uint32_t *)(e + 4);
            break;
        case MP_IOINT:
        case MP_LOCALINT:
            info->irq_entries++;
            break;
        case MP_BUS:
            break;
        default:
            return "unknown entry type";
        }
        e += size;
    }
    return 0;
}

void mptable_read(struct mp_info *info, const char **problem)
{
    const char *why = 0;
    memset(info, 0, sizeof *info);
    info->bsp_index = -1;

    const struct mp_floating *f = find_floating();
    const struct mp_config *c = f ? (const struct mp_config *)(uint64_t)f->config_addr : 0;
    if (!f)
        why = "no _MP_ floating pointer with a valid checksum found";
    else if (!c || memcmp(c->signature, MPC_SIGNATURE, 4) != 0)
        why = "floating pointer does not point at a PCMP table";
    else if (c->base_length < MPC_HEADER_BYTES || byte_sum((const uint8_t *)c, c->base_length) != 0)
        why = "PCMP base table checksum wrong";
    else if (c->ext_length &&
             (uint8_t)(byte_sum((const uint8_t *)c + c->base_length, c->ext_length) + c->ext_checksum) != 0)
        why = "PCMP extended table checksum wrong";
    else
        why = walk_entries(info, c);

    if (!why) {
        info->found = 1;
        info->floating_addr = (uint64_t)f;
        info->config_addr = (uint64_t)c;
    }
    if (problem)
        *problem = why;
}

/* "0 1 2 3" into buf, for the PASS detail. */
static void format_ids(char *buf, unsigned size, const struct mp_info *info)
{
    unsigned len = 0;
    buf[0] = 0;
    for (unsigned i = 0; i < info->cpu_count && len < size; i++)
        len += ksnprintf(buf + len, size - len, i ? " %u" : "%u", info->apic_ids[i]);
}

void check_mptable(const struct guest_params *params, struct mp_info *info)
{
    const char *name = "mptable", *why;
    mptable_read(info, &why);
    if (!info->found) {
        report_fail(name, "%s", why);
        return;
    }
    if (params->has_cpus && info->cpu_count != params->cpus) {
        report_fail(name, "expected %lu processor entries, found %u", params->cpus, info->cpu_count);
        return;
    }
    if (info->bsp_index < 0 || info->apic_ids[info->bsp_index] != cpu_apic_id()) {
        report_fail(name, "expected the BSP (APIC id %u) flagged BP, %s", cpu_apic_id(),
                    info->bsp_index < 0 ? "no entry is" : "another entry is");
        return;
    }
    if (info->ioapic_count == 0 || info->ioapic_addr != IOAPIC_DEFAULT_ADDR) {
        report_fail(name, "expected an IOAPIC at 0x%x, found %u IOAPICs, first at 0x%x",
                    IOAPIC_DEFAULT_ADDR, info->ioapic_count, info->ioapic_addr);
        return;
    }
    char ids[4 * MP_MAX_CPUS];
    format_ids(ids, sizeof ids, info);
    report_pass(name, "at 0x%lx, %u cpus (apic ids %s), ioapic 0x%x, %u irq entries%s", info->floating_addr,
                info->cpu_count, ids, info->ioapic_addr, info->irq_entries,
                params->has_cpus ? "" : ", count not checked");
}
