#include "zeropage.h"
#include "kstring.h"
#include "report.h"

static const uint8_t *zp;

static uint8_t zp_u8(unsigned off) { return zp[off]; }
static uint16_t zp_u16(unsigned off) { return *(const uint16_t *)(zp + off); }
static uint32_t zp_u32(unsigned off) { return *(const uint32_t *)(zp + off); }

void zeropage_init(uint64_t rsi)
{
    zp = (const uint8_t *)rsi;
}

/* The 64-bit pointer is split: low half in the setup header, high half in
 * ext_cmd_line_ptr (boot protocol 2.12+). */
static uint64_t cmdline_addr(void)
{
    return (uint64_t)zp_u32(BP_CMD_LINE_PTR) | ((uint64_t)zp_u32(BP_EXT_CMD_LINE_PTR) << 32);
}

const char *zeropage_cmdline(void)
{
    uint64_t addr = cmdline_addr();
    if (!zp || addr == 0 || !e820_range_is_ram(addr, addr + CMDLINE_MAX))
        return 0;
    const char *s = (const char *)addr;
    return strnlen(s, CMDLINE_MAX) < CMDLINE_MAX ? s : 0;
}

uint64_t zeropage_acpi_rsdp(void)
{
    return zp ? *(const uint64_t *)(zp + BP_ACPI_RSDP_ADDR) : 0;
}

unsigned zeropage_e820(const struct e820_entry **table)
{
    unsigned n = zp_u8(BP_E820_ENTRIES);
    *table = (const struct e820_entry *)(zp + BP_E820_TABLE);
    return n > E820_MAX_ENTRIES ? E820_MAX_ENTRIES : n;
}

int e820_range_is_ram(uint64_t start, uint64_t end)
{
    const struct e820_entry *e;
    unsigned n = zeropage_e820(&e);
    for (unsigned i = 0; i < n; i++) {
        if (e[i].type == E820_RAM && start >= e[i].addr && end <= e[i].addr + e[i].size)
            return 1;
    }
    return 0;
}

void check_boot_protocol(void)
{
    const char *name = "boot-protocol";
    if ((uint64_t)zp != ZEROPAGE_EXPECTED_ADDR) {
        report_fail(name, "RSI expected 0x%x, got 0x%lx", ZEROPAGE_EXPECTED_ADDR, (uint64_t)zp);
        return;
    }
    if (zp_u16(BP_BOOT_FLAG) != BOOT_FLAG_MAGIC) {
        report_fail(name, "boot_flag expected 0xaa55, got 0x%x", zp_u16(BP_BOOT_FLAG));
        return;
    }
    if (zp_u32(BP_HEADER) != HEADER_MAGIC) {
        report_fail(name, "header expected 0x%x (HdrS), got 0x%x", HEADER_MAGIC, zp_u32(BP_HEADER));
        return;
    }

    uint64_t addr = cmdline_addr();
    if (addr == 0) {
        report_fail(name, "cmd_line_ptr expected non-zero, got 0");
        return;
    }
    if (!e820_range_is_ram(addr, addr + CMDLINE_MAX)) {
        report_fail(name, "cmd_line_ptr 0x%lx expected in e820 RAM, is not", addr);
        return;
    }
    uint64_t len = strnlen((const char *)addr, CMDLINE_MAX);
    if (len >= CMDLINE_MAX) {
        report_fail(name, "command line expected NUL within %u bytes, found none", CMDLINE_MAX);
        return;
    }
    /* cmdline_size may count the NUL or not; it must cover the string. */
    uint32_t size = zp_u32(BP_CMDLINE_SIZE);
    if (size != 0 && size < len) {
        report_fail(name, "cmdline_size expected >= %lu, got %u", len, size);
        return;
    }

    report_pass(name, "zero page at 0x%lx, command line at 0x%lx (%lu bytes)", (uint64_t)zp, addr, len);
}

/* The map must be sorted by address with no overlaps: that is what the
 * VMM writes and what Linux would otherwise have to sanitize. */
static int check_e820_order(const struct e820_entry *e, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (e[i].size == 0) {
            report_fail("e820", "entry %u at 0x%lx expected non-empty, has size 0", i, e[i].addr);
            return 0;
        }
        if (i > 0 && e[i].addr < e[i - 1].addr + e[i - 1].size) {
            report_fail("e820", "entry %u at 0x%lx expected at or above 0x%lx (end of entry %u)",
                        i, e[i].addr, e[i - 1].addr + e[i - 1].size, i - 1);
            return 0;
        }
    }
    return 1;
}

extern char __image_start[], __image_end[];

void check_e820(void)
{
    const char *name = "e820";
    const struct e820_entry *e;
    unsigned raw = zp_u8(BP_E820_ENTRIES);
    if (raw == 0 || raw > E820_MAX_ENTRIES) {
        report_fail(name, "e820_entries expected 1..%u, got %u", E820_MAX_ENTRIES, raw);
        return;
    }
    unsigned n = zeropage_e820(&e);
    if (!check_e820_order(e, n))
        return;

    unsigned first_ram = n, ram_ranges = 0;
    for (unsigned i = 0; i < n; i++) {
        if (e[i].type == E820_RAM) {
            if (first_ram == n)
                first_ram = i;
            ram_ranges++;
        }
    }
    if (first_ram == n) {
        report_fail(name, "expected at least one RAM entry, found none");
        return;
    }
    if (e[first_ram].addr != 0) {
        report_fail(name, "first RAM entry expected at 0x0, got 0x%lx", e[first_ram].addr);
        return;
    }

    uint64_t lo = (uint64_t)__image_start, hi = (uint64_t)__image_end;
    if (!e820_range_is_ram(lo, hi)) {
        report_fail(name, "guest image 0x%lx-0x%lx expected inside one RAM entry, is not", lo, hi);
        return;
    }

    report_pass(name, "%u entries, %u RAM, sorted, guest image 0x%lx-0x%lx in RAM", n, ram_ranges, lo, hi);
}
