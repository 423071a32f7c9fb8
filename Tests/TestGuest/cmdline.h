/* The testguest.* parameters on the kernel command line. */
#ifndef TESTGUEST_CMDLINE_H
#define TESTGUEST_CMDLINE_H

#include <stdint.h>

enum guest_mode { MODE_SELFTEST, MODE_ECHO, MODE_TRIPLEFAULT, MODE_SPIN, MODE_RESET };

struct guest_params {
    enum guest_mode mode;
    const char *mode_name;
    int has_mem_mib; /* 0 when testguest.mem_mib was not given */
    uint64_t mem_mib;
    int has_cpus;    /* 0 when testguest.cpus was not given */
    uint64_t cpus;
};

/* Parses a NUL-terminated command line; unknown words are ignored. */
void cmdline_parse(const char *cmdline, struct guest_params *out);

#endif
