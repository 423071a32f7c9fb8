#include "report.h"
#include "print.h"

static unsigned passed, failed;

/* fmt may be NULL for a bare "PASS name" line. */
static void line(const char *verdict, const char *check, const char *fmt, va_list ap)
{
    kprintf("%s %s", verdict, check);
    if (fmt) {
        kprintf(": ");
        kvprintf(fmt, ap);
    }
    kprintf("\n");
}

void report_pass(const char *check, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    line("PASS", check, fmt, ap);
    va_end(ap);
    passed++;
}

void report_fail(const char *check, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    line("FAIL", check, fmt, ap);
    va_end(ap);
    failed++;
}

void report_skip(const char *check, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    line("SKIP", check, fmt, ap);
    va_end(ap);
}

void report_summary(void)
{
    kprintf("RESULT %u passed, %u failed\n", passed, failed);
}
