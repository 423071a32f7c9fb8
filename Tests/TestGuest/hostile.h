/* Hostile mode: another vCPU misbehaves towards a device or the console
 * while vCPU 0 keeps reading a block device and reports its progress. */
#ifndef TESTGUEST_HOSTILE_H
#define TESTGUEST_HOSTILE_H

#include "cmdline.h"

/* Sets up device 0 (a read-write block device holding the selftest's
 * sector pattern) and device 1 (the entropy device), runs the kind of
 * testguest.hostile and then reads sectors forever, printing
 * `HOSTILE <kind> blk <n> bad <m> ...` lines.  The application processors
 * must have been started (check_smp) for the kinds that use one. */
void run_hostile(const struct guest_params *params);

/* Reads testguest.hostile; call before the application processors start,
 * so that one of them is kept for the kinds that need it. */
void hostile_prepare(const struct guest_params *params);

/* Run by every application processor once it is up; returns at once
 * unless hostile mode claims the processor, and then never returns. */
void hostile_ap_work(void);

#endif
