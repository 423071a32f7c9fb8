#include "insn.h"
#include "idt.h"
#include "io.h"
#include "kstring.h"
#include "print.h"

/* int3 on a host that can run it: the breakpoint trap returns past it. */
static void breakpoint(struct isr_frame *frame)
{
    (void)frame;
}

static int is(const struct guest_params *p, const char *name)
{
    return strnlen(name, 32) == p->insn_len && strncmp(p->insn, name, p->insn_len) == 0;
}

/* Prints "INSN <name>" before the instruction and "INSN-DONE <name>" after
 * it, so the host knows which one stopped the guest. On hardware that can
 * run it, an instruction the CPU lacks raises #UD and the guest reports a
 * cpu-exception, which is also an answer. */
void run_insn(const struct guest_params *p)
{
    static uint64_t pair[2] __attribute__((aligned(16)));
    static uint8_t area[4096] __attribute__((aligned(64)));
    char name[32];
    if (!p->insn || p->insn_len >= sizeof name) {
        kprintf("FAIL insn: no testguest.insn= given\n");
        return;
    }
    for (uint64_t i = 0; i < p->insn_len; i++)
        name[i] = p->insn[i];
    name[p->insn_len] = 0;
    kprintf("INSN %s\n", name);
    if (is(p, "int3")) {
        idt_set_handler(3, breakpoint);
        __asm__ volatile("int3");
    } else if (is(p, "popcnt")) {
        uint64_t bits = 0xf0f0, count;
        __asm__ volatile("popcnt %1, %0" : "=r"(count) : "r"(bits));
    } else if (is(p, "clac")) {
        __asm__ volatile("clac");
    } else if (is(p, "fwait")) {
        __asm__ volatile("fwait");
    } else if (is(p, "cmpxchg16b")) {
        uint64_t lo = 0, hi = 0;
        __asm__ volatile("lock cmpxchg16b %0" : "+m"(pair), "+a"(lo), "+d"(hi) : "b"(1), "c"(2) : "memory");
    } else if (is(p, "xsave")) {
        /* XSAVE needs CR4.OSXSAVE, which KVM allows only when CPUID has XSAVE. */
        uint64_t cr4;
        __asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
        __asm__ volatile("mov %0, %%cr4" : : "r"(cr4 | (1ULL << 18)));
        __asm__ volatile("xsave64 %0" : "+m"(area) : "a"(1), "d"(0) : "memory");
    } else {
        kprintf("FAIL insn: unknown instruction %s\n", name);
        return;
    }
    kprintf("INSN-DONE %s\n", name);
}
