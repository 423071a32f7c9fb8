/* The floor for scripts/bench-startup.sh: the fewest KVM calls that boot the
 * start-up benchmark's guest (Tests/TestGuest/minimal.S) the way swiftvm
 * does, with nothing else. It creates the VM, sets the TSS address, creates
 * the in-kernel irqchip and PIT, registers one RAM region, loads the ELF's
 * PT_LOAD segments, builds the 64-bit entry state (identity-mapped first GiB,
 * flat GDT), gives one vCPU the host's supported CPUID and runs it until the
 * guest resets through the i8042 (port 0x64, value 0xfe). COM1 output goes to
 * standard output; every other exit is ignored.
 *
 *   cc -O2 -o floor-vmm floor-vmm.c && ./floor-vmm GUEST [MEMORY_MIB]
 *
 * Exit status 0 on the reset, 1 on anything else. */
#include <elf.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int xioctl(int fd, unsigned long request, void *arg, const char *name) {
    int result = ioctl(fd, request, arg);
    if (result < 0) die(name);
    return result;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s GUEST [MEMORY_MIB]\n", argv[0]);
        return 2;
    }
    size_t size = (size_t)(argc > 2 ? atoi(argv[2]) : 128) << 20;

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("/dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) die("KVM_CREATE_VM");
    if (ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) die("KVM_SET_TSS_ADDR");
    xioctl(vm, KVM_CREATE_IRQCHIP, NULL, "KVM_CREATE_IRQCHIP");
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    xioctl(vm, KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2");

    uint8_t *ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram == MAP_FAILED) die("mmap");
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0, .memory_size = size, .userspace_addr = (uintptr_t)ram};
    xioctl(vm, KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");

    /* The ELF's loadable segments, at their physical addresses. */
    int file = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (file < 0) die(argv[1]);
    Elf64_Ehdr header;
    if (pread(file, &header, sizeof header, 0) != sizeof header || memcmp(header.e_ident, ELFMAG, SELFMAG) != 0
        || header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_phnum > 64) {
        fprintf(stderr, "%s: not an ELF64 file\n", argv[1]);
        return 1;
    }
    Elf64_Phdr segments[64];
    size_t length = (size_t)header.e_phnum * sizeof segments[0];
    if (pread(file, segments, length, (off_t)header.e_phoff) != (ssize_t)length) die("program headers");
    for (int i = 0; i < header.e_phnum; i++) {
        Elf64_Phdr *segment = &segments[i];
        if (segment->p_type != PT_LOAD) continue;
        if (segment->p_paddr + segment->p_memsz > size) {
            fprintf(stderr, "segment %d beyond RAM\n", i);
            return 1;
        }
        if (pread(file, ram + segment->p_paddr, segment->p_filesz, (off_t)segment->p_offset)
            != (ssize_t)segment->p_filesz)
            die("segment");
    }
    close(file);

    /* GDT at 0x500 (null, code, data); PML4 0x9000 -> PDPT 0xa000 -> PD 0xb000,
     * 512 2-MiB pages: the first GiB identity-mapped. */
    uint64_t *gdt = (uint64_t *)(ram + 0x500);
    gdt[1] = 0x00af9b000000ffffULL;
    gdt[2] = 0x00cf93000000ffffULL;
    *(uint64_t *)(ram + 0x9000) = 0xa000 | 3;
    *(uint64_t *)(ram + 0xa000) = 0xb000 | 3;
    for (uint64_t i = 0; i < 512; i++) ((uint64_t *)(ram + 0xb000))[i] = (i << 21) | 0x83;

    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) die("KVM_CREATE_VCPU");
    int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size < 0) die("KVM_GET_VCPU_MMAP_SIZE");
    struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");

    /* Long mode needs CPUID to say the CPU has it. */
    struct {
        struct kvm_cpuid2 header;
        struct kvm_cpuid_entry2 entries[256];
    } cpuid = {.header.nent = 256};
    xioctl(kvm, KVM_GET_SUPPORTED_CPUID, &cpuid, "KVM_GET_SUPPORTED_CPUID");
    xioctl(vcpu, KVM_SET_CPUID2, &cpuid, "KVM_SET_CPUID2");

    struct kvm_sregs sregs;
    xioctl(vcpu, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
    struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = 0x8, .type = 0xb, .present = 1,
                               .s = 1, .l = 1, .g = 1};
    struct kvm_segment data = code;
    data.selector = 0x10;
    data.type = 0x3;
    data.l = 0;
    data.db = 1;
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.gdt.base = 0x500;
    sregs.gdt.limit = 3 * 8 - 1;
    sregs.cr0 = (sregs.cr0 & ~0x60000000ULL) | 0x80000011ULL; /* PE | ET | PG, caches on */
    sregs.cr3 = 0x9000;
    sregs.cr4 |= 0x20;                                           /* PAE */
    sregs.efer |= 0x500;                                         /* LME | LMA */
    xioctl(vcpu, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");
    struct kvm_regs regs = {.rflags = 0x2, .rip = header.e_entry, .rsp = 0x8ff0};
    xioctl(vcpu, KVM_SET_REGS, &regs, "KVM_SET_REGS");

    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *bytes = (uint8_t *)run + run->io.data_offset;
            if (run->io.direction != KVM_EXIT_IO_OUT) {
                memset(bytes, 0xff, (size_t)run->io.size * run->io.count);
            } else if (run->io.port == 0x64 && bytes[0] == 0xfe) {
                return 0;
            } else if (run->io.port == 0x3f8) {
                if (write(1, bytes, (size_t)run->io.size * run->io.count) < 0) return 1;
            }
            break;
        }
        case KVM_EXIT_MMIO:
            break;
        default:
            fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
            return 1;
        }
    }
}
