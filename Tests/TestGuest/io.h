/* Port I/O, MMIO and privileged-register helpers for the test guest.
 *
 * Everything here is a single instruction wrapped in inline assembly so the
 * C code reads like a driver.  The host KVM emulates guest instructions, so
 * only plain instructions are used (no int n, no int3, no 16-byte atomics). */
#ifndef TESTGUEST_IO_H
#define TESTGUEST_IO_H

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t value)
{
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}

/* Device registers are accessed through volatile pointers so the compiler
 * emits exactly one access of the right width per call. */
static inline void mmio_write32(uint64_t addr, uint32_t value)
{
    *(volatile uint32_t *)addr = value;
}

static inline uint32_t mmio_read32(uint64_t addr)
{
    return *(volatile uint32_t *)addr;
}

static inline uint16_t mmio_read16(uint64_t addr)
{
    return *(volatile uint16_t *)addr;
}

static inline uint8_t mmio_read8(uint64_t addr)
{
    return *(volatile uint8_t *)addr;
}

static inline void mmio_write8(uint64_t addr, uint8_t value)
{
    *(volatile uint8_t *)addr = value;
}

/* A pointer to a fixed low physical address (BIOS data area, trampoline
 * page).  The empty asm hides the constant from gcc, which would otherwise
 * warn that addresses in the first page cannot be valid objects. */
static inline void *phys_ptr(uint64_t addr)
{
    __asm__("" : "+r"(addr));
    return (void *)addr;
}

static inline void cpu_relax(void)
{
    __asm__ volatile("pause" ::: "memory");
}

static inline void irq_disable(void)
{
    __asm__ volatile("cli" ::: "memory");
}

/* sti takes effect after the following instruction, so "sti; hlt" cannot
 * lose a wake-up that arrives between the two: the interrupt is taken only
 * once the CPU is halted.  cli afterwards returns to the polling context. */
static inline void irq_wait(void)
{
    __asm__ volatile("sti; hlt; cli" ::: "memory");
}

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
    __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

/* Initial APIC id of the executing CPU: CPUID leaf 1, EBX bits 31..24. */
static inline uint32_t cpu_apic_id(void)
{
    uint32_t a, b, c, d;
    cpuid(1, &a, &b, &c, &d);
    return b >> 24;
}

static inline uint64_t read_cr3(void)
{
    uint64_t value;
    __asm__ volatile("mov %%cr3, %0" : "=r"(value));
    return value;
}

/* Writing CR3 flushes all non-global TLB entries; used after page tables
 * gain new entries. */
static inline void write_cr3(uint64_t value)
{
    __asm__ volatile("mov %0, %%cr3" : : "r"(value) : "memory");
}

static inline void halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

#endif
