/* Result lines of the output protocol: PASS/FAIL/SKIP per check and the
 * closing RESULT line the host test parses. */
#ifndef TESTGUEST_REPORT_H
#define TESTGUEST_REPORT_H

void report_pass(const char *check, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void report_fail(const char *check, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void report_skip(const char *check, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void report_summary(void);

#endif
