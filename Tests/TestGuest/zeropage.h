/* The Linux x86 boot_params ("zero page") the VMM passes in RSI, and the
 * checks of what the 64-bit boot protocol promises about it. */
#ifndef TESTGUEST_ZEROPAGE_H
#define TESTGUEST_ZEROPAGE_H

#include <stdint.h>

#define ZEROPAGE_EXPECTED_ADDR 0x7000 /* where Firecracker-style VMMs put it */
#define CMDLINE_MAX 2048

/* Field offsets in struct boot_params (Documentation/arch/x86/zero-page.rst). */
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_BOOT_FLAG 0x1fe
#define BP_HEADER 0x202
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_CMD_LINE_PTR 0x228
#define BP_CMDLINE_SIZE 0x238
#define BP_E820_TABLE 0x2d0

#define BOOT_FLAG_MAGIC 0xaa55
#define HEADER_MAGIC 0x53726448 /* "HdrS" read as a little-endian u32 */
#define E820_MAX_ENTRIES 128    /* slots in the zero page's table */

#define E820_RAM 1

/* struct hvm_start_info (Xen's PVH ABI), version 1. */
#define PVH_START_MAGIC 0x336ec578
#define PVH_MAGIC 0x00
#define PVH_VERSION 0x04
#define PVH_NR_MODULES 0x0c
#define PVH_MODLIST_PADDR 0x10
#define PVH_CMDLINE_PADDR 0x18
#define PVH_RSDP_PADDR 0x20
#define PVH_MEMMAP_PADDR 0x28
#define PVH_MEMMAP_ENTRIES 0x30

struct e820_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
} __attribute__((packed));

/* Remembers the zero page pointer the VMM passed in RSI (or the one
 * zeropage_from_pvh built). */
void zeropage_init(uint64_t rsi);

/* PVH entry: fills a zero page in the image from the hvm_start_info at
 * start_info (command line, memory map as e820, RSDP, the first module as
 * the initrd) and returns its address, which then goes to main() as the
 * zero page. Remembers start_info for the boot-protocol check. */
uint64_t zeropage_from_pvh(uint64_t start_info);

/* The zero page in use: the VMM's or the one built from PVH. */
const uint8_t *zeropage_base(void);

/* The command line if its pointer is set and it ends within CMDLINE_MAX
 * bytes; otherwise NULL. */
const char *zeropage_cmdline(void);

/* acpi_rsdp_addr: where the VMM put the ACPI RSDP, 0 without ACPI. */
uint64_t zeropage_acpi_rsdp(void);

/* Number of e820 entries (clamped to the table size) and the table. */
unsigned zeropage_e820(const struct e820_entry **table);

/* 1 when [start, end) lies inside a single e820 RAM entry. */
int e820_range_is_ram(uint64_t start, uint64_t end);

void check_boot_protocol(void);
void check_e820(void);

#endif
