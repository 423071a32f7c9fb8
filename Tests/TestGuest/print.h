/* Minimal formatted output.
 * Supports %s %c %d %u %x with an optional 'l' (64-bit) modifier and %%. */
#ifndef TESTGUEST_PRINT_H
#define TESTGUEST_PRINT_H

#include <stdarg.h>

/* To the serial console. */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list ap);

/* Into buf (always NUL-terminated, truncated to size); returns the length. */
unsigned ksnprintf(char *buf, unsigned size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
