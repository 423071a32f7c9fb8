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
