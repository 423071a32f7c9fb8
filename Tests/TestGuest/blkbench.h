/* The block benchmark workload: 4 KiB requests to the first virtio device,
 * sequential or random, reads or writes, timed by the host. */
#ifndef TESTGUEST_BLKBENCH_H
#define TESTGUEST_BLKBENCH_H

#include "cmdline.h"

/* Runs testguest.bench over testguest.bench_mib MiB of device 0.  Writes the
 * boot-timer byte when the workload starts, so the host can time it, and
 * prints `BENCH <kind> <requests> requests, <bytes> bytes, <failures> failed`. */
void run_blkbench(const struct guest_params *params);

#endif
