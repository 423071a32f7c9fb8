/* The handful of C string functions the guest needs.  gcc may also emit
 * calls to memset/memcpy/memcmp on its own, even with -ffreestanding. */
#ifndef TESTGUEST_KSTRING_H
#define TESTGUEST_KSTRING_H

#include <stddef.h>

void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strnlen(const char *s, size_t max);
int strncmp(const char *a, const char *b, size_t n);

#endif
