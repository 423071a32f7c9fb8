/* Echo mode: receive one line through the UART's receive interrupt and
 * print it back, so the host can test serial input end to end. */
#ifndef TESTGUEST_ECHO_H
#define TESTGUEST_ECHO_H

void run_echo(void);

#endif
