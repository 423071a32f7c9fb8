/* Interrupt descriptor table shared by all CPUs, with one assembly stub
 * per vector (isr.S) funnelling into a C dispatcher. */
#ifndef TESTGUEST_IDT_H
#define TESTGUEST_IDT_H

#include <stdint.h>

/* Vectors the guest uses. */
#define VEC_UART 0x24     /* IOAPIC pin 4 (COM1) */
#define VEC_WATCHDOG 0x30 /* LAPIC timer bounding interrupt waits */
#define VEC_VIRTIO_BASE 0x40 /* + device index: IOAPIC pin 5 + index */
#define VEC_SPURIOUS 0xff /* LAPIC spurious vector: no EOI */

/* Register state saved by isr_common, lowest address first. */
struct isr_frame {
    uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

typedef void (*isr_handler)(struct isr_frame *frame);

/* Fills all 256 gates and loads the IDT on this CPU. */
void idt_init(void);
/* Loads the already-filled IDT (application processors). */
void idt_load(void);
void idt_set_handler(uint8_t vector, isr_handler handler);

/* Loads an empty IDT: any exception then escalates to a triple fault. */
void idt_load_empty(void);

#endif
