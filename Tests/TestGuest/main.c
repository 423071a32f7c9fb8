/* swiftvm-testguest: a freestanding guest booted like a Linux vmlinux.
 * It checks what the 64-bit boot protocol promises, starts the other
 * vCPUs, exercises the serial interrupt path, reports on COM1 and resets
 * the machine.  See README.md for the output protocol. */
#include "apic.h"
#include "cmdline.h"
#include "echo.h"
#include "idt.h"
#include "initrd.h"
#include "io.h"
#include "memory.h"
#include "mptable.h"
#include "paging.h"
#include "platform.h"
#include "print.h"
#include "report.h"
#include "smp.h"
#include "uart.h"
#include "uart_irq.h"
#include "zeropage.h"

void main(uint64_t zero_page);

static void run_selftest(const struct guest_params *params)
{
    struct mp_info mp;
    check_boot_protocol();
    check_e820();
    check_memory_size(params);
    check_mptable(params, &mp);
    check_smp(params, &mp);
    check_uart_irq();
    check_initrd();
    report_summary();
    boot_timer_signal();
}

/* An exception with no IDT cannot be delivered: #UD becomes a double
 * fault, which cannot be delivered either, so the CPU shuts down. */
static void run_triplefault(void)
{
    kprintf("TRIPLEFAULT now\n");
    idt_load_empty();
    __asm__ volatile("ud2");
}

static void run_spin(void)
{
    kprintf("SPINNING\n");
    for (;;)
        cpu_relax();
}

void main(uint64_t zero_page)
{
    pic_mask_all(); /* before anything could enable interrupts */
    zeropage_init(zero_page);
    struct guest_params params;
    const char *cmdline = zeropage_cmdline();
    cmdline_parse(cmdline, &params);
    int mapped = paging_init(); /* the boot timer sits in the MMIO gap */
    if (params.mode == MODE_RESET) {
        /* The smallest useful guest, for start-up benchmarks: report
         * "booted" and reset at once, printing nothing. */
        boot_timer_signal();
        machine_reset();
    }

    uart_init();
    idt_init();
    if (mapped != 0)
        kprintf("swiftvm-testguest: could not map the MMIO gap\n");

    kprintf("swiftvm-testguest: mode=%s\n", params.mode_name);
    kprintf("CMDLINE %s\n", cmdline ? cmdline : "");

    switch (params.mode) {
    case MODE_ECHO:
        run_echo();
        break;
    case MODE_TRIPLEFAULT:
        run_triplefault();
        break;
    case MODE_SPIN:
        run_spin();
        break;
    case MODE_SELFTEST:
        run_selftest(&params);
        break;
    case MODE_RESET:
        break; /* handled above */
    }
    machine_reset();
}
