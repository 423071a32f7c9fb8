/* The memory-size check: e820 RAM adds up to what the VMM was asked for,
 * and the top of every RAM range is really backed. */
#ifndef TESTGUEST_MEMORY_H
#define TESTGUEST_MEMORY_H

#include "cmdline.h"

void check_memory_size(const struct guest_params *params);

#endif
