#include "zeropage.h"
#include "kstring.h"
#include "report.h"

static const uint8_t *zp;
/* PVH: the hvm_start_info the VMM passed in EBX (0 on the 64-bit entry),
 * and the zero page built from it. */
static uint64_t pvh_info;

static uint8_t zp_u8(unsigned off) { return zp[off]; }
static uint16_t zp_u16(unsigned off) { return *(const uint16_t *)(zp + off); }
static uint32_t zp_u32(unsigned off) { return *(const uint32_t *)(zp + off); }

void zeropage_init(uint64_t rsi)
{
    zp = (const uint8_t *)rsi;
}

const uint8_t *zeropage_base(void)
{
    return zp;
}

static uint8_t pvh_zero_page[4096] __attribute__((aligned(4096)));

static void put32(uint8_t *page, unsigned off, uint32_t v) { *(uint32_t *)(page + off) = v; }

/* hvm_memmap_table_entry: u64 addr, u64 size, u32 type, u32 reserved. */
struct pvh_memmap_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};

uint64_t zeropage_from_pvh(uint64_t start_info)
{
    const uint8_t *si = (const uint8_t *)start_info;
    uint8_t *page = pvh_zero_page;
    pvh_info = start_info;
    *(uint16_t *)(page + BP_BOOT_FLAG) = BOOT_FLAG_MAGIC;
    put32(page, BP_HEADER, HEADER_MAGIC);
    if (*(const uint32_t *)(si + PVH_MAGIC) != PVH_START_MAGIC)
        return (uint64_t)page; /* check_boot_protocol says what is wrong */

    uint64_t cmdline = *(const uint64_t *)(si + PVH_CMDLINE_PADDR);
    put32(page, BP_CMD_LINE_PTR, (uint32_t)cmdline);
    put32(page, BP_EXT_CMD_LINE_PTR, (uint32_t)(cmdline >> 32));
    if (cmdline)
        put32(page, BP_CMDLINE_SIZE, (uint32_t)strnlen((const char *)cmdline, CMDLINE_MAX));
    *(uint64_t *)(page + BP_ACPI_RSDP_ADDR) = *(const uint64_t *)(si + PVH_RSDP_PADDR);

    /* Linux takes the first module as its initrd; so does the initrd check. */
    if (*(const uint32_t *)(si + PVH_NR_MODULES) > 0) {
        const uint64_t *module = (const uint64_t *)*(const uint64_t *)(si + PVH_MODLIST_PADDR);
        put32(page, BP_RAMDISK_IMAGE, (uint32_t)module[0]);
        put32(page, BP_EXT_RAMDISK_IMAGE, (uint32_t)(module[0] >> 32));
        put32(page, BP_RAMDISK_SIZE, (uint32_t)module[1]);
        put32(page, BP_EXT_RAMDISK_SIZE, (uint32_t)(module[1] >> 32));
    }

    /* Version 0 has no memory map; the e820 check then reports 0 entries. */
    if (*(const uint32_t *)(si + PVH_VERSION) >= 1) {
        const struct pvh_memmap_entry *map =
            (const struct pvh_memmap_entry *)*(const uint64_t *)(si + PVH_MEMMAP_PADDR);
        uint32_t n = *(const uint32_t *)(si + PVH_MEMMAP_ENTRIES);
        if (n > E820_MAX_ENTRIES)
            n = E820_MAX_ENTRIES;
        struct e820_entry *table = (struct e820_entry *)(page + BP_E820_TABLE);
        for (uint32_t i = 0; i < n; i++) {
            table[i].addr = map[i].addr;
            table[i].size = map[i].size;
            table[i].type = map[i].type;
        }
        page[BP_E820_ENTRIES] = (uint8_t)n;
    }
    return (uint64_t)page;
}

/* The boot-protocol check for a PVH entry: what hvm_start_info promises. */
static void check_pvh_start_info(void)
{
    const char *name = "boot-protocol";
    const uint8_t *si = (const uint8_t *)pvh_info;
    uint32_t magic = *(const uint32_t *)(si + PVH_MAGIC);
    if (magic != PVH_START_MAGIC) {
        report_fail(name, "PVH start_info magic expected 0x%x, got 0x%x", PVH_START_MAGIC, magic);
        return;
    }
    uint32_t version = *(const uint32_t *)(si + PVH_VERSION);
    if (version < 1) {
        report_fail(name, "PVH start_info version expected >= 1 (memory map), got %u", version);
        return;
    }
    uint32_t entries = *(const uint32_t *)(si + PVH_MEMMAP_ENTRIES);
    if (entries == 0 || entries > E820_MAX_ENTRIES) {
        report_fail(name, "PVH memmap_entries expected 1..%u, got %u", E820_MAX_ENTRIES, entries);
        return;
    }
    uint64_t addr = *(const uint64_t *)(si + PVH_CMDLINE_PADDR);
    if (addr == 0) {
        report_fail(name, "PVH cmdline_paddr expected non-zero, got 0");
        return;
    }
    if (addr + CMDLINE_MAX > 0xc0000000ull) {
        report_fail(name, "PVH cmdline_paddr 0x%lx expected below the MMIO gap, is not", addr);
        return;
    }
    uint64_t len = strnlen((const char *)addr, CMDLINE_MAX);
    if (len >= CMDLINE_MAX) {
        report_fail(name, "command line expected NUL within %u bytes, found none", CMDLINE_MAX);
        return;
    }
    report_pass(name, "PVH start_info at 0x%lx (version %u, %u memmap entries), command line at 0x%lx (%lu bytes)",
                pvh_info, version, entries, addr, len);
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
    /* Through PVH the command line may sit outside e820 RAM (QEMU puts it
     * in its option ROM's area); the ABI only gives its address. */
    if (!zp || addr == 0 || (!pvh_info && !e820_range_is_ram(addr, addr + CMDLINE_MAX)))
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
    if (pvh_info) {
        check_pvh_start_info();
        return;
    }
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
