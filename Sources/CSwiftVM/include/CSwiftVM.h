// C shim for swiftvm: the Linux UAPI headers the VMM needs, ioctl request
// numbers as constants Swift can see (the _IOW/_IOR macros are not importable),
// non-variadic ioctl wrappers, and accessors for the anonymous unions inside
// `struct kvm_run`. Nothing else lives in C.
#pragma once

#include <linux/kvm.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/prctl.h>
#include <signal.h>
#include <pthread.h>
#include <termios.h>

#include "CSwiftVMURing.h"

// ioctls on /dev/kvm
extern const unsigned long SVM_KVM_GET_API_VERSION;
extern const unsigned long SVM_KVM_CREATE_VM;
extern const unsigned long SVM_KVM_CHECK_EXTENSION;
extern const unsigned long SVM_KVM_GET_VCPU_MMAP_SIZE;
extern const unsigned long SVM_KVM_GET_SUPPORTED_CPUID;
extern const unsigned long SVM_KVM_GET_MSR_INDEX_LIST;

// ioctls on a VM
extern const unsigned long SVM_KVM_CREATE_VCPU;
extern const unsigned long SVM_KVM_SET_USER_MEMORY_REGION;
extern const unsigned long SVM_KVM_SET_TSS_ADDR;
extern const unsigned long SVM_KVM_SET_IDENTITY_MAP_ADDR;
extern const unsigned long SVM_KVM_CREATE_IRQCHIP;
extern const unsigned long SVM_KVM_CREATE_PIT2;
extern const unsigned long SVM_KVM_IRQFD;
extern const unsigned long SVM_KVM_IOEVENTFD;
extern const unsigned long SVM_KVM_IRQ_LINE;

// ioctls on a vCPU
extern const unsigned long SVM_KVM_RUN;
extern const unsigned long SVM_KVM_GET_REGS;
extern const unsigned long SVM_KVM_SET_REGS;
extern const unsigned long SVM_KVM_GET_SREGS;
extern const unsigned long SVM_KVM_SET_SREGS;
extern const unsigned long SVM_KVM_GET_FPU;
extern const unsigned long SVM_KVM_SET_FPU;
extern const unsigned long SVM_KVM_SET_CPUID2;
extern const unsigned long SVM_KVM_GET_MSRS;
extern const unsigned long SVM_KVM_SET_MSRS;
extern const unsigned long SVM_KVM_GET_LAPIC;
extern const unsigned long SVM_KVM_SET_LAPIC;
extern const unsigned long SVM_KVM_GET_MP_STATE;
extern const unsigned long SVM_KVM_TRANSLATE;

/// ioctl(2) with a pointer argument.
int svm_ioctl_ptr(int fd, unsigned long request, void *arg);
/// ioctl(2) with an integer argument.
int svm_ioctl_int(int fd, unsigned long request, unsigned long arg);

// Accessors for the exit-reason union of struct kvm_run.
static inline uint8_t svm_run_io_is_write(const struct kvm_run *run) { return run->io.direction == KVM_EXIT_IO_OUT; }
static inline uint8_t svm_run_io_size(const struct kvm_run *run) { return run->io.size; }
static inline uint16_t svm_run_io_port(const struct kvm_run *run) { return run->io.port; }
static inline uint32_t svm_run_io_count(const struct kvm_run *run) { return run->io.count; }
static inline uint64_t svm_run_io_data_offset(const struct kvm_run *run) { return run->io.data_offset; }

static inline uint64_t svm_run_mmio_phys_addr(const struct kvm_run *run) { return run->mmio.phys_addr; }
static inline uint8_t *svm_run_mmio_data(struct kvm_run *run) { return run->mmio.data; }
static inline uint32_t svm_run_mmio_len(const struct kvm_run *run) { return run->mmio.len; }
static inline uint8_t svm_run_mmio_is_write(const struct kvm_run *run) { return run->mmio.is_write; }

static inline uint64_t svm_run_fail_entry_reason(const struct kvm_run *run) {
    return run->fail_entry.hardware_entry_failure_reason;
}
static inline uint32_t svm_run_fail_entry_cpu(const struct kvm_run *run) { return run->fail_entry.cpu; }

static inline uint32_t svm_run_internal_suberror(const struct kvm_run *run) { return run->internal.suberror; }
static inline uint32_t svm_run_internal_ndata(const struct kvm_run *run) { return run->internal.ndata; }
static inline uint64_t svm_run_internal_data(const struct kvm_run *run, uint32_t i) {
    return i < 16 ? run->internal.data[i] : 0;
}

static inline uint32_t svm_run_system_event_type(const struct kvm_run *run) { return run->system_event.type; }

static inline uint32_t svm_run_exception(const struct kvm_run *run) { return run->ex.exception; }
static inline uint32_t svm_run_exception_error_code(const struct kvm_run *run) { return run->ex.error_code; }

// struct kvm_cpuid2 / kvm_msrs end in flexible arrays; Swift builds them in
// raw buffers, so it needs their sizes.
static inline unsigned long svm_sizeof_kvm_cpuid2(void) { return sizeof(struct kvm_cpuid2); }
static inline unsigned long svm_sizeof_kvm_msrs(void) { return sizeof(struct kvm_msrs); }

// SIGRTMIN is a function-like macro in glibc, which Swift cannot import.
static inline int svm_sigrtmin(void) { return SIGRTMIN; }

/// Names the calling thread (pthread_setname_np needs _GNU_SOURCE, which the
/// Swift importer does not see).
int svm_set_thread_name(const char *name);
