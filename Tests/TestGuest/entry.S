/* Entry points: the BSP's, reached from the VMM either through the Linux
 * 64-bit boot protocol (_start, e_entry) or through PVH (pvh_start, named
 * by the XEN_ELFNOTE_PHYS32_ENTRY note below), and the APs', reached from
 * ap_trampoline.S. */
#include "smp.h"

#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define BOOT_STACK_BYTES 16384

#define PVH_CODE32 0x08
#define PVH_DATA 0x10
#define PVH_CODE64 0x18
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100

    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    cli
    cld
    /* RSI holds the zero page; r12 is callee-saved and untouched by the
     * .bss clear, so it carries the pointer to main(). r13 holds the PVH
     * start_info, 0 on this path. */
    movq %rsi, %r12
    xorl %r13d, %r13d
boot_common:
    leaq boot_stack_top(%rip), %rsp
    leaq __bss_start(%rip), %rdi
    leaq __bss_end(%rip), %rcx
    subq %rdi, %rcx
    shrq $3, %rcx /* the linker script keeps .bss 8-byte aligned and sized */
    xorl %eax, %eax
    rep stosq /* 8 bytes a step: each step is emulated on some hosts */
    call load_kernel_gdt
    testq %r13, %r13
    jz 2f
    /* PVH: build a zero page from hvm_start_info, so the rest of the guest
     * reads one structure whichever way it was entered. */
    movq %r13, %rdi
    call zeropage_from_pvh
    movq %rax, %r12
2:  movq %r12, %rdi
    call main
1:  cli
    hlt
    jmp 1b

/* The PVH entry (Xen's hvm_start_info ABI): 32-bit protected mode, flat
 * segments, paging off, EBX = the physical address of hvm_start_info.
 * It loads its own GDT, turns on long mode with the image's own page
 * tables (the first GiB identity-mapped with 2 MiB pages, as the 64-bit
 * boot protocol promises) and joins the 64-bit path. Paging is off, so
 * every address here is physical: the image runs where it is linked. */
    .code32
    .globl pvh_start
pvh_start:
    cli
    cld
    movl %ebx, %esi /* start_info, kept in ESI */
    lgdt pvh_gdtr
    movl $PVH_DATA, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl $pvh_pml4, %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl %cr0, %eax
    orl $CR0_PG, %eax
    movl %eax, %cr0 /* long mode is active from here (EFER.LMA) */
    ljmpl $PVH_CODE64, $pvh_long

    .code64
pvh_long:
    movl %esi, %r13d /* zero-extends: the start_info address */
    xorl %r12d, %r12d
    jmp boot_common

/* Switches to the image's own GDT, so nothing depends on the VMM's GDT
 * in low memory, and reloads every segment register from it. */
load_kernel_gdt:
    lgdt kernel_gdtr(%rip)
    movl $KERNEL_DS, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    popq %rax           /* return address */
    pushq $KERNEL_CS
    pushq %rax
    lretq               /* far return reloads CS */

/* APs arrive here in long mode with interrupts off.  Each takes a unique
 * stack slot with an atomic increment, so they may start in parallel. */
    .globl ap_entry64
ap_entry64:
    movl $1, %eax
    lock xaddl %eax, ap_stack_next(%rip)
    cmpl $AP_MAX, %eax
    jae 2f
    incl %eax
    imull $AP_STACK_BYTES, %eax
    leaq ap_stacks(%rip), %rsp
    addq %rax, %rsp
    call load_kernel_gdt
    call ap_main
2:  cli
    hlt
    jmp 2b

    /* XEN_ELFNOTE_PHYS32_ENTRY (type 18, owner "Xen"): the physical
     * address of pvh_start. A 4-byte descriptor, which QEMU, Firecracker and
     * swiftvm all read. */
    .section .note.pvh, "a", @note
    .balign 4
    .long 4   /* namesz: "Xen" and its NUL */
    .long 4   /* descsz */
    .long 18  /* type */
    .asciz "Xen"
    .long pvh_start

    .section .rodata
    .balign 8
pvh_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff /* 0x08: 32-bit code, flat, accessed */
    .quad 0x00cf93000000ffff /* 0x10: data, flat, accessed */
    .quad 0x00af9b000000ffff /* 0x18: 64-bit code, accessed */
pvh_gdt_end:
pvh_gdtr:
    .word pvh_gdt_end - pvh_gdt - 1
    .long pvh_gdt

    /* The PVH path's page tables, complete at link time (the .bss clear
     * runs only after they are in use). paging.c adds the GiBs above the
     * first to this PDPT as it does to the VMM's. */
    .section .data
    .balign 4096
pvh_pml4:
    .quad pvh_pdpt + 0x3 /* present, writable */
    .fill 511, 8, 0
pvh_pdpt:
    .quad pvh_pd + 0x3
    .fill 511, 8, 0
pvh_pd:
    .set pvh_page, 0
    .rept 512
    .quad (pvh_page << 21) | 0x83 /* present, writable, 2 MiB */
    .set pvh_page, pvh_page + 1
    .endr

    .section .rodata
    .balign 8
kernel_gdt:
    .quad 0
    .quad 0x00af9b000000ffff /* 0x08: 64-bit code, accessed */
    .quad 0x00cf93000000ffff /* 0x10: flat data, accessed */
kernel_gdt_end:
kernel_gdtr:
    .word kernel_gdt_end - kernel_gdt - 1
    .quad kernel_gdt

    .section .bss
    .balign 16
boot_stack:
    .skip BOOT_STACK_BYTES
boot_stack_top:
    .balign 4
ap_stack_next:
    .skip 4
    .balign 16
ap_stacks:
    .skip AP_MAX * AP_STACK_BYTES
