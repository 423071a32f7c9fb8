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
