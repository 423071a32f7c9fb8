/* The block benchmark workload: requests of 512 bytes to 64 KiB to the
 * first virtio device, sequential or random, reads or writes, up to 32 in
 * flight, timed by the host. */
#ifndef TESTGUEST_BLKBENCH_H
#define TESTGUEST_BLKBENCH_H

#include "cmdline.h"

/* Runs testguest.bench over testguest.bench_mib MiB of device 0, in
 * requests of testguest.bench_frame bytes (default 4096) with
 * testguest.bench_depth of them in flight (default 1).  Writes the
 * boot-timer byte when the workload starts, so the host can time it, and
 * prints `BENCH <kind> <requests> requests, <bytes> bytes, <failures>
 * failed, <size>-byte requests, depth <depth>`. */
void run_blkbench(const struct guest_params *params);

#endif
