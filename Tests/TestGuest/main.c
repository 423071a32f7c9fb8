/* swiftvm-testguest: a freestanding guest booted like a Linux vmlinux.
 * It checks what the 64-bit boot protocol promises, starts the other
 * vCPUs, exercises the serial interrupt path, reports on COM1 and resets
 * the machine.  See README.md for the output protocol. */
#include "acpi.h"
#include "apic.h"
#include "cmdline.h"
#include "echo.h"
#include "hostile.h"
#include "blkbench.h"
#include "idt.h"
#include "initrd.h"
#include "insn.h"
#include "keyboard.h"
#include "io.h"
#include "memory.h"
#include "mptable.h"
#include "netbench.h"
#include "paging.h"
#include "platform.h"
#include "print.h"
#include "report.h"
#include "smp.h"
#include "uart.h"
#include "uart_irq.h"
#include "virtio.h"
#include "zeropage.h"

void main(uint64_t zero_page);

/* With ACPI the VMM may leave out the MP table: the MADT then supplies
 * the CPU list for the smp check. */
static void check_cpu_tables(const struct guest_params *params, const struct acpi_info *acpi, struct mp_info *mp)
{
    if (params->acpi == ACPI_ON && acpi->found) {
        mptable_read(mp, 0);
        if (!mp->found) {
            acpi_cpu_list(acpi, mp);
            report_skip("mptable", "no MP table with ACPI; the MADT lists %u cpus", mp->cpu_count);
            return;
        }
    }
    check_mptable(params, mp);
}

/* Hostile mode needs the other vCPUs running before it starts. */
static void run_hostile_mode(const struct guest_params *params)
{
    struct mp_info mp;
    struct acpi_info acpi;
    hostile_prepare(params);
    check_acpi(params, &acpi);
    check_cpu_tables(params, &acpi, &mp);
    check_smp(params, &mp);
    run_hostile(params);
}

static void run_selftest(const struct guest_params *params)
{
    struct mp_info mp;
    struct acpi_info acpi;
    check_boot_protocol();
    check_e820();
    check_memory_size(params);
    check_acpi(params, &acpi);
    check_cpu_tables(params, &acpi, &mp);
    check_smp(params, &mp);
    check_uart_irq();
    check_initrd();
    check_virtio(params);
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

/* Writes console lines as fast as the UART takes them, forever: the VMM
 * must stay stoppable whatever its console's reader does. */
static void run_flood(void)
{
    for (uint64_t n = 0;; n++)
        kprintf("FLOOD %u 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\n", (unsigned)n);
}

/* Prints TICK <n> about every 50 ms of wall time, forever: a host program
 * sees whether the vCPU runs, is paused, or was stopped. */
static void run_ticker(void)
{
    for (uint64_t n = 0;; n++) {
        kprintf("TICK %u\n", (unsigned)n);
        lapic_delay_us(50000);
    }
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
    if (params.mode == MODE_SILENT) {
        /* A guest that never writes to its console, for the VMM's silence
         * diagnosis: it spins until stopped from outside. */
        for (;;)
            cpu_relax();
    }
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
    case MODE_BLKBENCH:
        run_blkbench(&params);
        break;
    case MODE_NETBENCH:
        run_netbench(&params);
        break;
    case MODE_INSN:
        run_insn(&params);
        break;
    case MODE_FLOOD:
        run_flood();
        break;
    case MODE_TICKER:
        run_ticker();
        break;
    case MODE_KEYBOARD:
        run_keyboard();
        break;
    case MODE_HOSTILE:
        run_hostile_mode(&params);
        break;
    case MODE_RESET:
    case MODE_SILENT:
        break; /* handled above */
    }
    switch (params.finish) {
    case FINISH_POWEROFF:
        machine_poweroff();
    case FINISH_HOLD:
        /* Keeps the machine up after the results, so the host can act on a
         * running VM (kill it, say) with the guest's writes already issued. */
        kprintf("HOLDING\n");
        for (;;)
            cpu_relax();
    case FINISH_RESET:
        break;
    }
    machine_reset();
}
