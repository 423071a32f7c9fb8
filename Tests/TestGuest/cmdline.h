/* The testguest.* parameters on the kernel command line. */
#ifndef TESTGUEST_CMDLINE_H
#define TESTGUEST_CMDLINE_H

#include <stdint.h>

enum guest_mode { MODE_SELFTEST, MODE_ECHO, MODE_TRIPLEFAULT, MODE_SPIN, MODE_RESET, MODE_BLKBENCH, MODE_SILENT, MODE_INSN, MODE_FLOOD, MODE_TICKER, MODE_KEYBOARD, MODE_NETBENCH, MODE_HOSTILE };

/* The block workload of blkbench mode. */
enum bench_kind { BENCH_SEQREAD, BENCH_RANDREAD, BENCH_SEQWRITE, BENCH_RANDWRITE };

/* The workload of netbench mode (the same testguest.bench= word). */
enum net_bench_kind { NET_BENCH_NET_TX, NET_BENCH_NET_RX, NET_BENCH_VSOCK_TX, NET_BENCH_VSOCK_RX };

/* What hostile mode does (testguest.hostile=, see hostile.c). */
enum hostile_kind { HOSTILE_NOTIFY, HOSTILE_REQUEUE, HOSTILE_DEAF, HOSTILE_CHATTER };

/* What testguest.acpi= says the VMM did. */
enum acpi_expect { ACPI_UNKNOWN, ACPI_ON, ACPI_OFF };

/* Kinds in testguest.virtio=, one per attached virtio-mmio device. */
enum virtio_kind { VIRTIO_BLK_RW, VIRTIO_BLK_RO, VIRTIO_BLK_WB, VIRTIO_RNG, VIRTIO_NET, VIRTIO_VSOCK, VIRTIO_BALLOON, VIRTIO_UNKNOWN };

#define VIRTIO_MAX_DEVICES 8

/* What the guest does once its mode has run. */
enum guest_finish { FINISH_RESET, FINISH_POWEROFF, FINISH_HOLD };

struct guest_params {
    enum guest_mode mode;
    const char *mode_name;
    int has_mem_mib; /* 0 when testguest.mem_mib was not given */
    uint64_t mem_mib;
    int has_cpus;    /* 0 when testguest.cpus was not given */
    uint64_t cpus;
    enum acpi_expect acpi;
    int has_virtio;  /* 0 when testguest.virtio was not given */
    unsigned virtio_count;
    enum virtio_kind virtio[VIRTIO_MAX_DEVICES];
    int virtio_overflow; /* more entries than VIRTIO_MAX_DEVICES */
    enum guest_finish finish;
    enum bench_kind bench;
    uint64_t bench_mib; /* bytes the workload moves, in MiB */
    enum net_bench_kind net_bench;
    uint64_t bench_frame; /* netbench: bytes per frame or packet payload; blkbench: bytes per request; 0: the workload's default */
    uint64_t bench_depth; /* blkbench: requests in flight at once (1 to 32) */
    const char *insn;   /* testguest.insn=: the instruction insn mode runs */
    uint64_t insn_len;
    enum hostile_kind hostile;
};

/* Parses a NUL-terminated command line; unknown words are ignored. */
void cmdline_parse(const char *cmdline, struct guest_params *out);

#endif
