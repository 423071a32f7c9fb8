/* Local APIC, IOAPIC and the legacy 8259 PICs. */
#ifndef TESTGUEST_APIC_H
#define TESTGUEST_APIC_H

#include <stdint.h>

#define LAPIC_BASE 0xfee00000ull
#define IOAPIC_BASE 0xfec00000ull

/* Masks both 8259s.  KVM's LAPIC has LINT0 in ExtINT mode, so an unmasked
 * PIC that nobody programmed would deliver a bogus vector on sti. */
void pic_mask_all(void);

/* Software-enables the LAPIC with the given spurious vector, TPR 0. */
void lapic_enable(uint8_t spurious_vector);
uint32_t lapic_id(void);
void lapic_eoi(void);

/* Sends an IPI: icr_low holds delivery mode and vector.  Returns 0 once
 * the LAPIC reports it delivered, -1 if it stayed pending too long. */
int lapic_send_ipi(uint8_t dest_apic_id, uint32_t icr_low);

/* One-shot LAPIC timer raising vector after roughly ms milliseconds
 * (KVM's LAPIC counts at 1 GHz before the divider). */
void lapic_timer_oneshot(uint8_t vector, uint32_t ms);
void lapic_timer_stop(void);

/* Wall-clock measurement with the LAPIC timer counting down from its
 * maximum, interrupt masked.  Guest instruction speed on an emulating
 * host is unpredictable, so delays use this instead of loop counts. */
void lapic_stopwatch_start(void);
uint64_t lapic_elapsed_us(void);

/* Waits about us microseconds, also bounded by an iteration count. */
void lapic_delay_us(uint64_t us);

/* Routes IOAPIC pin to vector on APIC dest: fixed delivery, physical
 * destination, edge-triggered, active high. */
void ioapic_route_edge(unsigned pin, uint8_t vector, uint8_t dest_apic_id);
void ioapic_mask(unsigned pin);

#endif
