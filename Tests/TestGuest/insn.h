/* Insn mode: run one instruction that an emulating KVM (kvm_pvm) cannot
 * execute, so the host can see how swiftvm reports it. */
#ifndef TESTGUEST_INSN_H
#define TESTGUEST_INSN_H

#include "cmdline.h"

void run_insn(const struct guest_params *params);

#endif
