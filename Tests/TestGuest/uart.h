/* 8250/16550 UART on COM1, driven the way a simple kernel driver would. */
#ifndef TESTGUEST_UART_H
#define TESTGUEST_UART_H

#include <stdint.h>

#define UART_BASE 0x3f8
#define UART_GSI 4 /* COM1 is wired to IOAPIC pin 4 */

/* Register offsets from UART_BASE (DLAB = 0 unless noted). */
#define UART_RBR 0 /* receive buffer (read) */
#define UART_THR 0 /* transmit holding (write) */
#define UART_IER 1 /* interrupt enable */
#define UART_DLL 0 /* divisor latch low (DLAB = 1) */
#define UART_DLM 1 /* divisor latch high (DLAB = 1) */
#define UART_IIR 2 /* interrupt identification (read) */
#define UART_FCR 2 /* FIFO control (write) */
#define UART_LCR 3 /* line control */
#define UART_MCR 4 /* modem control */
#define UART_LSR 5 /* line status */

#define UART_IER_RDI 0x01  /* receive data available */
#define UART_IER_THRI 0x02 /* transmit holding register empty */
#define UART_MCR_OUT2 0x08 /* gates the interrupt line on PC hardware */
#define UART_LSR_DR 0x01   /* a received byte is waiting */
#define UART_LSR_THRE 0x20 /* transmit holding register empty */
#define UART_IIR_NO_INT 0x01
#define UART_IIR_ID_MASK 0x0e
#define UART_IIR_THRI 0x02
#define UART_IIR_RDI 0x04

void uart_init(void);
void uart_putc(char c);
void uart_puts(const char *s);

/* Returns 1 and stores the byte if one was waiting, else 0. */
int uart_try_getc(uint8_t *out);

void uart_set_ier(uint8_t ier);
void uart_enable_irq_line(int on);
uint8_t uart_read_iir(void);

#endif
