#include "print.h"
#include "uart.h"

#include <stdint.h>

/* Output goes either to the UART (buf == NULL) or into a bounded buffer
 * that always stays NUL-terminated. */
struct sink {
    char *buf;
    unsigned size;
    unsigned len;
};

static void emit(struct sink *s, char c)
{
    if (!s->buf) {
        uart_putc(c);
        return;
    }
    if (s->len + 1 < s->size) {
        s->buf[s->len++] = c;
        s->buf[s->len] = 0;
    }
}

static void emit_str(struct sink *s, const char *str)
{
    while (*str)
        emit(s, *str++);
}

static void emit_unsigned(struct sink *s, uint64_t v, unsigned base)
{
    char digits[20]; /* 2^64 has 20 decimal digits */
    int n = 0;
    do {
        digits[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (n)
        emit(s, digits[--n]);
}

static void emit_signed(struct sink *s, int64_t v)
{
    if (v < 0) {
        emit(s, '-');
        emit_unsigned(s, -(uint64_t)v, 10);
    } else {
        emit_unsigned(s, (uint64_t)v, 10);
    }
}

static void format(struct sink *s, const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            emit(s, *fmt);
            continue;
        }
        int is_long = 0;
        while (fmt[1] == 'l') {
            is_long = 1;
            fmt++;
        }
        switch (*++fmt) {
        case 's': {
            const char *str = va_arg(ap, const char *);
            emit_str(s, str ? str : "(null)");
            break;
        }
        case 'c':
            emit(s, (char)va_arg(ap, int));
            break;
        case 'd':
            emit_signed(s, is_long ? va_arg(ap, int64_t) : va_arg(ap, int));
            break;
        case 'u':
            emit_unsigned(s, is_long ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10);
            break;
        case 'x':
            emit_unsigned(s, is_long ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16);
            break;
        case '%':
            emit(s, '%');
            break;
        case '\0':
            return;
        default: /* unknown conversion: show it rather than guess */
            emit(s, '%');
            emit(s, *fmt);
        }
    }
}

void kvprintf(const char *fmt, va_list ap)
{
    struct sink s = { 0, 0, 0 };
    format(&s, fmt, ap);
}

void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
}

unsigned ksnprintf(char *buf, unsigned size, const char *fmt, ...)
{
    struct sink s = { buf, size, 0 };
    va_list ap;
    if (size)
        buf[0] = 0;
    va_start(ap, fmt);
    format(&s, fmt, ap);
    va_end(ap);
    return s.len;
}
