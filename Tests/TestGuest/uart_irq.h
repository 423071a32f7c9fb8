/* The uart-irq check: COM1's interrupt reaches the guest through the
 * IOAPIC and the LAPIC, also while the CPU is halted. */
#ifndef TESTGUEST_UART_IRQ_H
#define TESTGUEST_UART_IRQ_H

void check_uart_irq(void);

/* Routes COM1 (IOAPIC pin UART_GSI) to VEC_UART on this CPU, enables the
 * LAPIC and the UART's OUT2 line.  Used by the check and by echo mode. */
void uart_irq_route(void);
void uart_irq_unroute(void);

#endif
