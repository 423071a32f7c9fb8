#include "idt.h"
#include "apic.h"
#include "io.h"
#include "platform.h"
#include "print.h"
#include "report.h"

#define KERNEL_CS 0x08
#define GATE_INTERRUPT 0x8e /* present, DPL 0, 64-bit interrupt gate */
#define ISR_STUB_BYTES 16   /* must match the alignment in isr.S */
#define EXCEPTION_VECTORS 32

struct idt_gate {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_high;
    uint32_t reserved;
} __attribute__((packed));

struct idt_pointer {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

extern char isr_stubs[]; /* 256 stubs, ISR_STUB_BYTES apart */

static struct idt_gate idt[256] __attribute__((aligned(16)));
static isr_handler handlers[256];

static void set_gate(unsigned vector, uint64_t target)
{
    struct idt_gate *g = &idt[vector];
    g->offset_low = (uint16_t)target;
    g->selector = KERNEL_CS;
    g->ist = 0;
    g->type_attr = GATE_INTERRUPT;
    g->offset_mid = (uint16_t)(target >> 16);
    g->offset_high = (uint32_t)(target >> 32);
    g->reserved = 0;
}

static void load(uint16_t limit, uint64_t base)
{
    struct idt_pointer p = { limit, base };
    __asm__ volatile("lidt %0" : : "m"(p));
}

void idt_init(void)
{
    for (unsigned v = 0; v < 256; v++)
        set_gate(v, (uint64_t)isr_stubs + v * ISR_STUB_BYTES);
    idt_load();
}

void idt_load(void)
{
    load(sizeof idt - 1, (uint64_t)idt);
}

void idt_load_empty(void)
{
    load(0, 0);
}

void idt_set_handler(uint8_t vector, isr_handler handler)
{
    handlers[vector] = handler;
}

/* A CPU exception means the guest itself is broken: say where, close the
 * report so the host sees a failure rather than a hang, and reset. */
static void unexpected_exception(const struct isr_frame *f)
{
    report_fail("cpu-exception", "vector %lu, error code 0x%lx, rip 0x%lx on apic id %u", f->vector,
                f->error_code, f->rip, cpu_apic_id());
    report_summary();
    machine_reset();
}

void isr_dispatch(struct isr_frame *frame)
{
    isr_handler h = handlers[frame->vector];
    if (h)
        h(frame);
    else if (frame->vector < EXCEPTION_VECTORS)
        unexpected_exception(frame);
    else if (frame->vector != VEC_SPURIOUS)
        lapic_eoi(); /* stray device interrupt: acknowledge and ignore */
}
