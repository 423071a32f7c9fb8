#include "apic.h"
#include "io.h"

/* LAPIC register offsets (Intel SDM vol. 3, table 11-1). */
#define LAPIC_ID 0x020
#define LAPIC_TPR 0x080
#define LAPIC_EOI 0x0b0
#define LAPIC_SVR 0x0f0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_CURRENT 0x390
#define LAPIC_TIMER_DIVIDE 0x3e0

#define LAPIC_SVR_ENABLE 0x100
#define LAPIC_LVT_MASKED 0x10000
#define LAPIC_ICR_PENDING 0x1000
#define LAPIC_DIVIDE_BY_16 0x3
#define LAPIC_TICKS_PER_MS (1000000u / 16) /* 1 GHz bus clock / 16 */
#define IPI_PENDING_SPINS 10000
#define DELAY_SPIN_LIMIT 20000 /* ~0.2 s even if the timer never runs */

#define IOAPIC_REGSEL 0x00
#define IOAPIC_WINDOW 0x10
#define IOAPIC_REDTBL(pin) (0x10 + 2 * (pin))
#define IOAPIC_MASKED 0x10000

static uint32_t lapic_read(unsigned reg) { return mmio_read32(LAPIC_BASE + reg); }
static void lapic_write(unsigned reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }

void pic_mask_all(void)
{
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

void lapic_enable(uint8_t spurious_vector)
{
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | spurious_vector);
}

uint32_t lapic_id(void)
{
    return lapic_read(LAPIC_ID) >> 24;
}

void lapic_eoi(void)
{
    lapic_write(LAPIC_EOI, 0);
}

int lapic_send_ipi(uint8_t dest_apic_id, uint32_t icr_low)
{
    /* The high half holds the destination and must be written first:
     * writing the low half sends the IPI. */
    lapic_write(LAPIC_ICR_HIGH, (uint32_t)dest_apic_id << 24);
    lapic_write(LAPIC_ICR_LOW, icr_low);
    for (int i = 0; i < IPI_PENDING_SPINS; i++) {
        if (!(lapic_read(LAPIC_ICR_LOW) & LAPIC_ICR_PENDING))
            return 0;
        cpu_relax();
    }
    return -1;
}

void lapic_timer_oneshot(uint8_t vector, uint32_t ms)
{
    lapic_write(LAPIC_TIMER_DIVIDE, LAPIC_DIVIDE_BY_16);
    lapic_write(LAPIC_LVT_TIMER, vector); /* mode bits 0 = one-shot */
    lapic_write(LAPIC_TIMER_INITIAL, ms * LAPIC_TICKS_PER_MS);
}

void lapic_timer_stop(void)
{
    lapic_write(LAPIC_TIMER_INITIAL, 0);
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED);
}

void lapic_stopwatch_start(void)
{
    lapic_write(LAPIC_TIMER_DIVIDE, LAPIC_DIVIDE_BY_16);
    lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED);
    lapic_write(LAPIC_TIMER_INITIAL, 0xffffffffu); /* ~68 s at 62.5 MHz */
}

uint64_t lapic_elapsed_us(void)
{
    uint64_t ticks = 0xffffffffu - lapic_read(LAPIC_TIMER_CURRENT);
    return ticks * 1000 / LAPIC_TICKS_PER_MS;
}

void lapic_delay_us(uint64_t us)
{
    lapic_stopwatch_start();
    for (int i = 0; i < DELAY_SPIN_LIMIT && lapic_elapsed_us() < us; i++)
        cpu_relax();
}

static void ioapic_write(unsigned reg, uint32_t v)
{
    mmio_write32(IOAPIC_BASE + IOAPIC_REGSEL, reg);
    mmio_write32(IOAPIC_BASE + IOAPIC_WINDOW, v);
}

void ioapic_route_edge(unsigned pin, uint8_t vector, uint8_t dest_apic_id)
{
    /* High dword (destination) first, so the entry is never live with a
     * stale destination; the low dword also clears the mask bit. */
    ioapic_write(IOAPIC_REDTBL(pin) + 1, (uint32_t)dest_apic_id << 24);
    ioapic_write(IOAPIC_REDTBL(pin), vector);
}

void ioapic_mask(unsigned pin)
{
    ioapic_write(IOAPIC_REDTBL(pin), IOAPIC_MASKED);
}
