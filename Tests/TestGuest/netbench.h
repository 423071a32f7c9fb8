/* The network benchmark workloads: virtio-net frames to and from a host
 * program on the TAP, and a vsock stream to and from a host program on
 * swiftvm's Unix sockets, timed and measured by the host
 * (scripts/bench-net.sh, scripts/lib/bench-net-host.py). */
#ifndef TESTGUEST_NETBENCH_H
#define TESTGUEST_NETBENCH_H

#include "cmdline.h"

/* The wire conventions the host program shares. */
#define NETBENCH_ETHERTYPE 0x88b5           /* IEEE local experimental */
#define NETBENCH_DATA_TAG "SWIFTVM-NETBENCH" /* 16 bytes, then a 32-bit sequence number */
#define NETBENCH_ACK_TAG "SWIFTVM-NETACK.."  /* 16 bytes, then the next sequence number (u32), frames (u32), bytes (u64) */
#define NETBENCH_TAG_LEN 16
#define NETBENCH_ACK_EVERY 16   /* net-rx: the guest acknowledges every 16 frames */
#define NETBENCH_VSOCK_PORT 5201 /* vsock-rx: the guest listens here; vsock-tx: it connects here */

/* Runs testguest.bench (net-tx, net-rx, vsock-tx or vsock-rx) over
 * testguest.bench_mib MiB, in frames or packets of testguest.bench_frame
 * bytes, on the first virtio device of the right kind.  Prints
 * `NETBENCH READY <kind>` when the host may start timing (and, for the rx
 * workloads, sending) and `NETBENCH DONE <kind> ...` when the data has all
 * gone through, or `FAIL netbench: ...`. */
void run_netbench(const struct guest_params *params);

#endif
