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
/// The calling thread's name (pthread_getname_np); 0 on success.
int svm_get_thread_name(char *name, unsigned long size);

// virtio-net / TAP: the tun driver's ioctls and flags (linux/if_tun.h), and
// wrappers that fill `struct ifreq`, whose unions Swift cannot build.
extern const unsigned long SVM_TUNSETIFF;
extern const unsigned long SVM_TUNGETIFF;
extern const unsigned long SVM_TUNGETFEATURES;
extern const unsigned long SVM_TUNSETOFFLOAD;
extern const unsigned long SVM_TUNSETVNETHDRSZ;
extern const int SVM_IFF_TUN;
extern const int SVM_IFF_TAP;
extern const int SVM_IFF_NO_PI;
extern const int SVM_IFF_VNET_HDR;
extern const int SVM_IFF_MULTI_QUEUE;
extern const unsigned int SVM_TUN_F_CSUM;
extern const unsigned int SVM_TUN_F_TSO4;
extern const unsigned int SVM_TUN_F_TSO6;
extern const unsigned int SVM_TUN_F_UFO;
/// Bytes of an interface name with its NUL (IFNAMSIZ).
extern const int SVM_IFNAMSIZ;

/// TUNSETIFF: attaches `fd` (an open /dev/net/tun) to interface `name` with
/// `flags` (IFF_*). Returns ioctl's result; errno is kept.
int svm_tun_set_iff(int fd, const char *name, int flags);
/// TUNGETIFF: the attached interface's name (into `name`, `name_size`
/// bytes, NUL-terminated) and flags. Returns ioctl's result; errno is kept.
int svm_tun_get_iff(int fd, char *name, unsigned long name_size, int *flags);
/// SIOCGIFFLAGS: the flags (IFF_UP, ...) of interface `name` in this
/// network namespace. Returns 0, or -1 with errno set.
int svm_interface_flags(const char *name, int *flags);
extern const int SVM_IFF_UP;

// vsock: the Unix-socket host side of the hybrid vsock device.
/// accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC): a connection
/// socket that is non-blocking and not inherited across exec from the start
/// (accept4 needs _GNU_SOURCE, which the Swift importer does not see).
/// Returns accept4's result; errno is kept.
int svm_vsock_accept(int listener);

// --- vCPU exit requests ------------------------------------------------------

/// Sets kvm_run.immediate_exit with a sequentially consistent atomic store:
/// another thread sets it to kick the vCPU and the vCPU's own thread clears
/// it, so plain stores would race.
static inline void svm_set_immediate_exit(struct kvm_run *run, unsigned char value) {
    __atomic_store_n(&run->immediate_exit, value, __ATOMIC_SEQ_CST);
}

// --- seccomp -------------------------------------------------------------------
// Per-thread seccomp filters (docs/security.md). An allow-list is compiled with
// libseccomp into a classic BPF program once, before any thread runs under a
// filter; a thread then loads its program with two system calls and nothing
// else (prctl PR_SET_NO_NEW_PRIVS, seccomp SECCOMP_SET_MODE_FILTER). A call no
// rule allows raises SIGSYS (SECCOMP_RET_TRAP), whose handler names the call
// and the thread on standard error and ends the process.

/// The number of system call `name` on this machine's architecture, or -1
/// when libseccomp does not know the name.
int svm_seccomp_syscall_number(const char *name);
/// A new allow-list under construction; NULL when libseccomp cannot make one.
void *svm_seccomp_filter_new(void);
/// Frees a filter made by svm_seccomp_filter_new.
void svm_seccomp_filter_free(void *filter);
/// Adds one rule for `syscall`: the call is allowed (`error` < 0) or fails
/// with errno `error`, when all `count` argument checks hold:
/// (argument[index[i]] & mask[i]) == value[i]. Returns 0 or a negative errno.
int svm_seccomp_filter_add(void *filter, int syscall, int error, unsigned count, const unsigned *index,
                           const uint64_t *mask, const uint64_t *value);
/// The filter as a BPF program (an array of struct sock_filter): copies at
/// most `capacity` bytes to `buffer` and returns the program's size in
/// bytes, or a negative errno.
long svm_seccomp_filter_export(void *filter, void *buffer, unsigned long capacity);
/// Sets no_new_privs and installs `program` (`bytes` long) on the calling
/// thread only. Returns 0 or a negative errno.
int svm_seccomp_load(const void *program, unsigned long bytes);
/// Installs the process's SIGSYS handler (again only to change `status`):
/// a trapped call writes one line naming it and the thread, then the
/// process exits with `status`. Names of all system calls are looked up
/// here, so the handler itself only calls write(2) and _exit(2).
int svm_seccomp_install_trap_handler(int status);
/// How the calling thread is named in a violation report (at most 63 bytes).
void svm_seccomp_set_thread_label(const char *label);
/// Remembers the settings of terminal `fd` (0) as they are now, so that the
/// SIGSYS handler puts them back (TCSETS) before the process ends.
void svm_seccomp_keep_terminal(int fd);
/// syscall(2) with six arguments, for `swiftvm seccomp-probe`; returns its
/// result, or -errno.
long svm_seccomp_probe_call(long number, unsigned long a0, unsigned long a1, unsigned long a2, unsigned long a3,
                            unsigned long a4, unsigned long a5);
