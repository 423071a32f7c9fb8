#include "uart_irq.h"
#include "apic.h"
#include "idt.h"
#include "io.h"
#include "report.h"
#include "uart.h"

/* Long enough for a slow emulating host, short enough for a quick FAIL. */
#define WATCHDOG_MS 1000

static volatile int uart_irqs, watchdog_fired;
static volatile uint8_t first_iir;

static void on_uart(struct isr_frame *frame)
{
    (void)frame;
    uint8_t iir = uart_read_iir(); /* reading IIR acknowledges THRE */
    if (uart_irqs++ == 0)
        first_iir = iir;
    lapic_eoi();
}

static void on_watchdog(struct isr_frame *frame)
{
    (void)frame;
    watchdog_fired = 1;
    lapic_eoi();
}

void uart_irq_route(void)
{
    lapic_enable(VEC_SPURIOUS);
    ioapic_route_edge(UART_GSI, VEC_UART, (uint8_t)cpu_apic_id());
    uart_enable_irq_line(1);
}

void uart_irq_unroute(void)
{
    uart_set_ier(0);
    ioapic_mask(UART_GSI);
    uart_enable_irq_line(0);
}

void check_uart_irq(void)
{
    idt_set_handler(VEC_UART, on_uart);
    idt_set_handler(VEC_WATCHDOG, on_watchdog);
    uart_irq_route();
    lapic_timer_oneshot(VEC_WATCHDOG, WATCHDOG_MS);
    /* Enabling THRE interrupts with an empty transmitter raises one at once. */
    uart_set_ier(UART_IER_THRI);
    while (!uart_irqs && !watchdog_fired)
        irq_wait();
    lapic_timer_stop();
    uart_irq_unroute();
    idt_set_handler(VEC_UART, 0);

    if (!uart_irqs)
        report_fail("uart-irq", "expected an interrupt on vector 0x%x within %u ms, none arrived", VEC_UART,
                    WATCHDOG_MS);
    else if ((first_iir & (UART_IIR_NO_INT | UART_IIR_ID_MASK)) != UART_IIR_THRI)
        report_fail("uart-irq", "interrupt arrived but IIR expected THR empty (0x%x), got 0x%x", UART_IIR_THRI,
                    first_iir);
    else
        report_pass("uart-irq", "THR-empty interrupt on vector 0x%x via IOAPIC pin %u", VEC_UART, UART_GSI);
}
