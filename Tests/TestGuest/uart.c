/* Polled 8250 output and the few register accesses the IRQ tests need. */
#include "uart.h"
#include "io.h"

/* A real 8250 drains a byte in ~87 us at 115200 baud; an emulated one is
 * always ready.  The bound only protects against a VMM that never sets THRE:
 * the byte is then written anyway rather than hanging the guest. */
#define THRE_SPIN_LIMIT 10000

static uint8_t reg_read(int reg) { return inb(UART_BASE + reg); }
static void reg_write(int reg, uint8_t v) { outb(UART_BASE + reg, v); }

void uart_init(void)
{
    reg_write(UART_IER, 0);     /* no interrupts until a test asks */
    reg_write(UART_LCR, 0x80);  /* DLAB = 1 to reach the divisor */
    reg_write(UART_DLL, 1);     /* 115200 baud = 1.8432 MHz / 16 / 1 */
    reg_write(UART_DLM, 0);
    reg_write(UART_LCR, 0x03);  /* 8 data bits, no parity, 1 stop bit */
    reg_write(UART_FCR, 0xc7);  /* enable and clear FIFOs, 14-byte trigger */
    reg_write(UART_MCR, 0x03);  /* DTR | RTS; OUT2 stays off (no IRQ yet) */
}

void uart_putc(char c)
{
    for (int i = 0; i < THRE_SPIN_LIMIT; i++) {
        if (reg_read(UART_LSR) & UART_LSR_THRE)
            break;
        cpu_relax();
    }
    reg_write(UART_THR, (uint8_t)c);
}

void uart_puts(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

int uart_try_getc(uint8_t *out)
{
    if (!(reg_read(UART_LSR) & UART_LSR_DR))
        return 0;
    *out = reg_read(UART_RBR);
    return 1;
}

void uart_set_ier(uint8_t ier)
{
    reg_write(UART_IER, ier);
}

void uart_enable_irq_line(int on)
{
    uint8_t mcr = reg_read(UART_MCR);
    reg_write(UART_MCR, on ? (mcr | UART_MCR_OUT2) : (mcr & ~UART_MCR_OUT2));
}

uint8_t uart_read_iir(void)
{
    return reg_read(UART_IIR);
}
