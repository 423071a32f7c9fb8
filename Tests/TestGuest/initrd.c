#include "initrd.h"
#include "kstring.h"
#include "report.h"
#include "zeropage.h"

#define PAGE_SIZE 0x1000ull
#define MMIO_GAP_START 0xc0000000ull

extern char __image_end[];

static uint32_t zp32(uint64_t offset)
{
    return *(volatile const uint32_t *)(zeropage_base() + offset);
}

static int bytes_equal(const char *at, const char *expected, uint64_t len)
{
    for (uint64_t i = 0; i < len; i++)
        if (at[i] != expected[i])
            return 0;
    return 1;
}

void check_initrd(void)
{
    const char *name = "initrd";
    uint64_t addr = zp32(BP_RAMDISK_IMAGE) | ((uint64_t)zp32(BP_EXT_RAMDISK_IMAGE) << 32);
    uint64_t size = zp32(BP_RAMDISK_SIZE) | ((uint64_t)zp32(BP_EXT_RAMDISK_SIZE) << 32);
    if (size == 0)
        return;

    uint64_t head = sizeof(INITRD_HEAD) - 1, tail = sizeof(INITRD_TAIL) - 1;
    if (addr % PAGE_SIZE != 0) {
        report_fail(name, "image at 0x%lx is not page-aligned", addr);
    } else if (addr < (uint64_t)__image_end) {
        report_fail(name, "image at 0x%lx overlaps the kernel, which ends at 0x%lx", addr, (uint64_t)__image_end);
    } else if (addr + size > MMIO_GAP_START || !e820_range_is_ram(addr, addr + size)) {
        report_fail(name, "image 0x%lx-0x%lx is not in RAM below the MMIO gap", addr, addr + size);
    } else if (size < head + tail) {
        report_fail(name, "%lu bytes is too small to hold the test markers", size);
    } else if (!bytes_equal((const char *)addr, INITRD_HEAD, head)) {
        report_fail(name, "the first bytes at 0x%lx are not the ones the host wrote", addr);
    } else if (!bytes_equal((const char *)(addr + size - tail), INITRD_TAIL, tail)) {
        report_fail(name, "the last bytes of the %lu-byte image are not the ones the host wrote", size);
    } else {
        report_pass(name, "%lu bytes at 0x%lx, first and last bytes as written", size, addr);
    }
}
