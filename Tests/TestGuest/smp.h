/* Starting the application processors with INIT-SIPI-SIPI. */
#ifndef TESTGUEST_SMP_H
#define TESTGUEST_SMP_H

/* The trampoline is copied to this page below 1 MiB; the SIPI vector is
 * its page number, and the AP starts there in real mode at CS:IP 1000:0. */
#define AP_TRAMPOLINE_BASE 0x10000
#define AP_SIPI_VECTOR (AP_TRAMPOLINE_BASE >> 12)

#define AP_MAX 63           /* the MP table lists at most 64 CPUs */
#define AP_STACK_BYTES 4096

#ifndef __ASSEMBLER__
#include "cmdline.h"
#include "mptable.h"

void check_smp(const struct guest_params *params, const struct mp_info *mp);

/* Called on each AP's own stack by the trampoline; never returns. */
void ap_main(void);
#endif

#endif
