/* The smallest guest swiftvm can boot, for start-up benchmarks: it maps the
 * page holding the boot timer, writes the boot-complete byte, and resets
 * through the i8042. About a dozen instructions, so a run measures the VMM.
 *
 * Two entries. _start (e_entry) is entered like a vmlinux (64-bit boot
 * protocol): long mode, the first GiB identity-mapped by the PDPT at
 * 0xa000. pvh_start, named by the PVH note at the end, is entered in 32-bit
 * protected mode with paging off (QEMU's microvm, Firecracker and swiftvm's
 * --boot-protocol pvh): every address is physical there, so it writes the
 * byte and resets without setting up anything. */
    .section .text
    .globl _start
    .code64
_start:
    /* PDPT[3] -> our page directory; its entry 0 maps 0xc0000000 with a
     * 2 MiB uncached page (present, writable, PWT, PCD, PS). */
    leaq mmio_pd(%rip), %rax
    orq $0x3, %rax
    movq %rax, 0xa000 + 3 * 8
    movabsq $(0xc0000000 | 0x9b), %rax
    movq %rax, mmio_pd(%rip)
    movq %cr3, %rax
    movq %rax, %cr3
    movl $0xc0000000, %edi
    movb $123, (%rdi)              /* boot timer: booted */
    movb $0xfe, %al
    outb %al, $0x64                /* i8042: pulse reset */
1:  cli
    hlt
    jmp 1b

    .section .bss
    .balign 4096
mmio_pd:
    .space 4096

    .section .text
    .code32
    .globl pvh_start
pvh_start:
    movl $0xc0000000, %edi
    movb $123, (%edi)              /* boot timer: booted */
    movb $0xfe, %al
    outb %al, $0x64                /* i8042: pulse reset */
2:  cli
    hlt
    jmp 2b

    /* XEN_ELFNOTE_PHYS32_ENTRY: owner "Xen", type 18, the 32-bit entry. */
    .section .note.pvh, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .long pvh_start
