#include "CSwiftVM.h"

#include <sys/ioctl.h>

const unsigned long SVM_KVM_GET_API_VERSION = KVM_GET_API_VERSION;
const unsigned long SVM_KVM_CREATE_VM = KVM_CREATE_VM;
const unsigned long SVM_KVM_CHECK_EXTENSION = KVM_CHECK_EXTENSION;
const unsigned long SVM_KVM_GET_VCPU_MMAP_SIZE = KVM_GET_VCPU_MMAP_SIZE;
const unsigned long SVM_KVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
const unsigned long SVM_KVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;

const unsigned long SVM_KVM_CREATE_VCPU = KVM_CREATE_VCPU;
const unsigned long SVM_KVM_SET_USER_MEMORY_REGION = KVM_SET_USER_MEMORY_REGION;
const unsigned long SVM_KVM_SET_TSS_ADDR = KVM_SET_TSS_ADDR;
const unsigned long SVM_KVM_SET_IDENTITY_MAP_ADDR = KVM_SET_IDENTITY_MAP_ADDR;
const unsigned long SVM_KVM_CREATE_IRQCHIP = KVM_CREATE_IRQCHIP;
const unsigned long SVM_KVM_CREATE_PIT2 = KVM_CREATE_PIT2;
const unsigned long SVM_KVM_IRQFD = KVM_IRQFD;
const unsigned long SVM_KVM_IOEVENTFD = KVM_IOEVENTFD;
const unsigned long SVM_KVM_IRQ_LINE = KVM_IRQ_LINE;

const unsigned long SVM_KVM_RUN = KVM_RUN;
const unsigned long SVM_KVM_GET_REGS = KVM_GET_REGS;
const unsigned long SVM_KVM_SET_REGS = KVM_SET_REGS;
const unsigned long SVM_KVM_GET_SREGS = KVM_GET_SREGS;
const unsigned long SVM_KVM_SET_SREGS = KVM_SET_SREGS;
const unsigned long SVM_KVM_GET_FPU = KVM_GET_FPU;
const unsigned long SVM_KVM_SET_FPU = KVM_SET_FPU;
const unsigned long SVM_KVM_SET_CPUID2 = KVM_SET_CPUID2;
const unsigned long SVM_KVM_GET_MSRS = KVM_GET_MSRS;
const unsigned long SVM_KVM_SET_MSRS = KVM_SET_MSRS;
const unsigned long SVM_KVM_GET_LAPIC = KVM_GET_LAPIC;
const unsigned long SVM_KVM_SET_LAPIC = KVM_SET_LAPIC;
const unsigned long SVM_KVM_GET_MP_STATE = KVM_GET_MP_STATE;
const unsigned long SVM_KVM_TRANSLATE = KVM_TRANSLATE;

int svm_ioctl_ptr(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }
int svm_ioctl_int(int fd, unsigned long request, unsigned long arg) { return ioctl(fd, request, arg); }

#include <pthread.h>

int svm_set_thread_name(const char *name) { return pthread_setname_np(pthread_self(), name); }

// virtio-net / TAP
#include <errno.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const unsigned long SVM_TUNSETIFF = TUNSETIFF;
const unsigned long SVM_TUNGETIFF = TUNGETIFF;
const unsigned long SVM_TUNGETFEATURES = TUNGETFEATURES;
const unsigned long SVM_TUNSETOFFLOAD = TUNSETOFFLOAD;
const unsigned long SVM_TUNSETVNETHDRSZ = TUNSETVNETHDRSZ;
const int SVM_IFF_TUN = IFF_TUN;
const int SVM_IFF_TAP = IFF_TAP;
const int SVM_IFF_NO_PI = IFF_NO_PI;
const int SVM_IFF_VNET_HDR = IFF_VNET_HDR;
const int SVM_IFF_MULTI_QUEUE = IFF_MULTI_QUEUE;
const unsigned int SVM_TUN_F_CSUM = TUN_F_CSUM;
const unsigned int SVM_TUN_F_TSO4 = TUN_F_TSO4;
const unsigned int SVM_TUN_F_TSO6 = TUN_F_TSO6;
const unsigned int SVM_TUN_F_UFO = TUN_F_UFO;
const int SVM_IFNAMSIZ = IFNAMSIZ;
const int SVM_IFF_UP = IFF_UP;

int svm_tun_set_iff(int fd, const char *name, int flags)
{
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = (short)flags;
    return ioctl(fd, TUNSETIFF, &request);
}

int svm_tun_get_iff(int fd, char *name, unsigned long name_size, int *flags)
{
    struct ifreq request;
    memset(&request, 0, sizeof request);
    int result = ioctl(fd, TUNGETIFF, &request);
    if (result == 0) {
        if (name && name_size > 0) {
            strncpy(name, request.ifr_name, name_size - 1);
            name[name_size - 1] = '\0';
        }
        if (flags)
            *flags = (unsigned short)request.ifr_flags;
    }
    return result;
}

int svm_interface_flags(const char *name, int *flags)
{
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return -1;
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    int result = ioctl(sock, SIOCGIFFLAGS, &request);
    if (result == 0 && flags)
        *flags = (unsigned short)request.ifr_flags;
    int saved = errno;
    close(sock);
    errno = saved;
    return result;
}

// vsock
#include <sys/socket.h>

int svm_vsock_accept(int listener) { return accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC); }

// --- thread names ---------------------------------------------------------------

int svm_get_thread_name(char *name, unsigned long size) { return pthread_getname_np(pthread_self(), name, size); }

// --- seccomp -------------------------------------------------------------------
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>

int svm_seccomp_syscall_number(const char *name)
{
    int number = seccomp_syscall_resolve_name(name);
    return number == __NR_SCMP_ERROR ? -1 : number;
}

void *svm_seccomp_filter_new(void)
{
    scmp_filter_ctx filter = seccomp_init(SCMP_ACT_TRAP);
    if (filter == NULL)
        return NULL;
    // A binary tree of syscall numbers instead of one long chain of
    // comparisons, and no_new_privs is set by svm_seccomp_load itself.
    seccomp_attr_set(filter, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    seccomp_attr_set(filter, SCMP_FLTATR_CTL_NNP, 0);
    return filter;
}

void svm_seccomp_filter_free(void *filter) { seccomp_release(filter); }

int svm_seccomp_filter_add(void *filter, int syscall, int error, unsigned count, const unsigned *index,
                           const uint64_t *mask, const uint64_t *value)
{
    if (count > 6)
        return -EINVAL;
    struct scmp_arg_cmp checks[6];
    for (unsigned i = 0; i < count; i++) {
        checks[i].arg = index[i];
        checks[i].op = SCMP_CMP_MASKED_EQ;
        checks[i].datum_a = mask[i];
        checks[i].datum_b = value[i];
    }
    uint32_t action = error < 0 ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO((uint32_t)error);
    return seccomp_rule_add_exact_array(filter, action, syscall, count, checks);
}

long svm_seccomp_filter_export(void *filter, void *buffer, unsigned long capacity)
{
    int fd = memfd_create("swiftvm-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    long result = seccomp_export_bpf(filter, fd);
    if (result == 0) {
        off_t size = lseek(fd, 0, SEEK_CUR);
        if (size < 0) {
            result = -errno;
        } else if ((unsigned long)size > capacity) {
            result = size;  // the caller asks again with room for it
        } else {
            long done = 0;
            while (done < size) {
                ssize_t got = pread(fd, (char *)buffer + done, (size_t)(size - done), done);
                if (got <= 0) {
                    done = got < 0 ? -errno : -EIO;
                    break;
                }
                done += got;
            }
            result = done < 0 ? done : size;
        }
    }
    close(fd);
    return result;
}

int svm_seccomp_load(const void *program, unsigned long bytes)
{
    struct sock_fprog fprog = {
        .len = (unsigned short)(bytes / sizeof(struct sock_filter)),
        .filter = (struct sock_filter *)program,
    };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -errno;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0)
        return -errno;
    return 0;
}

// The SIGSYS handler's view: syscall names looked up in advance, the exit
// status, and each thread's label. It only formats into a stack buffer,
// write(2)s it and _exit(2)s: every filter allows both.
#define SVM_SECCOMP_NAMES 512
static char *svm_seccomp_names[SVM_SECCOMP_NAMES];
static volatile int svm_seccomp_status = 148;
static __thread char svm_seccomp_label[64];
static struct termios svm_seccomp_terminal;
static volatile int svm_seccomp_terminal_fd = -1;

void svm_seccomp_keep_terminal(int fd)
{
    if (tcgetattr(fd, &svm_seccomp_terminal) == 0)
        svm_seccomp_terminal_fd = fd;
}

void svm_seccomp_set_thread_label(const char *label)
{
    strncpy(svm_seccomp_label, label, sizeof svm_seccomp_label - 1);
    svm_seccomp_label[sizeof svm_seccomp_label - 1] = '\0';
}

struct svm_line {
    char text[512];
    size_t length;
};

static void svm_line_add(struct svm_line *line, const char *text)
{
    while (*text && line->length < sizeof line->text - 1)
        line->text[line->length++] = *text++;
}

static void svm_line_number(struct svm_line *line, unsigned long long value, int hex)
{
    char digits[24];
    int count = 0;
    unsigned base = hex ? 16 : 10;
    do {
        digits[count++] = "0123456789abcdef"[value % base];
        value /= base;
    } while (value && count < (int)sizeof digits);
    if (hex)
        svm_line_add(line, "0x");
    while (count > 0 && line->length < sizeof line->text - 1)
        line->text[line->length++] = digits[--count];
}

static void svm_seccomp_trap(int signal, siginfo_t *info, void *context)
{
    (void)signal;
    struct svm_line line = {.length = 0};
    int number = info->si_syscall;
    const greg_t *registers = ((ucontext_t *)context)->uc_mcontext.gregs;
    svm_line_add(&line, "swiftvm: error: seccomp: thread ");
    svm_line_add(&line, svm_seccomp_label[0] ? svm_seccomp_label : "(inherited filter)");
    svm_line_add(&line, " made a system call its filter does not allow: ");
    if (number >= 0 && number < SVM_SECCOMP_NAMES && svm_seccomp_names[number])
        svm_line_add(&line, svm_seccomp_names[number]);
    else
        svm_line_add(&line, "unknown");
    svm_line_add(&line, " (");
    svm_line_number(&line, (unsigned long long)number, 0);
    svm_line_add(&line, ")");
    if (number == SYS_ioctl) {
        svm_line_add(&line, " with request ");
        svm_line_number(&line, (unsigned long long)registers[REG_RSI] & 0xffffffffULL, 1);
    } else {
        svm_line_add(&line, " with arguments ");
        svm_line_number(&line, (unsigned long long)registers[REG_RDI], 1);
        svm_line_add(&line, ", ");
        svm_line_number(&line, (unsigned long long)registers[REG_RSI], 1);
        svm_line_add(&line, ", ");
        svm_line_number(&line, (unsigned long long)registers[REG_RDX], 1);
    }
    svm_line_add(&line, "; exiting with status ");
    svm_line_number(&line, (unsigned long long)svm_seccomp_status, 0);
    svm_line_add(&line, " (see docs/security.md)\n");
    if (svm_seccomp_terminal_fd >= 0)
        tcsetattr(svm_seccomp_terminal_fd, TCSANOW, &svm_seccomp_terminal);
    size_t done = 0;
    while (done < line.length) {
        ssize_t written = write(2, line.text + done, line.length - done);
        if (written <= 0)
            break;
        done += (size_t)written;
    }
    _exit(svm_seccomp_status);
}

int svm_seccomp_install_trap_handler(int status)
{
    svm_seccomp_status = status;
    for (int number = 0; number < SVM_SECCOMP_NAMES; number++) {
        if (!svm_seccomp_names[number])
            svm_seccomp_names[number] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, number);
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = svm_seccomp_trap;
    action.sa_flags = SA_SIGINFO;
    sigfillset(&action.sa_mask);
    return sigaction(SIGSYS, &action, NULL) == 0 ? 0 : -errno;
}

long svm_seccomp_probe_call(long number, unsigned long a0, unsigned long a1, unsigned long a2, unsigned long a3,
                            unsigned long a4, unsigned long a5)
{
    long result = syscall(number, a0, a1, a2, a3, a4, a5);
    return result < 0 ? -errno : result;
}
