/* 64-bit entry points: the BSP's, reached from the VMM through the Linux
 * 64-bit boot protocol, and the APs', reached from ap_trampoline.S. */
#include "smp.h"

#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define BOOT_STACK_BYTES 16384

    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    cli
    cld
    /* RSI holds the zero page; r12 is callee-saved and untouched by the
     * .bss clear, so it carries the pointer to main(). */
    movq %rsi, %r12
    leaq boot_stack_top(%rip), %rsp
    leaq __bss_start(%rip), %rdi
    leaq __bss_end(%rip), %rcx
    subq %rdi, %rcx
    shrq $3, %rcx /* the linker script keeps .bss 8-byte aligned and sized */
    xorl %eax, %eax
    rep stosq /* 8 bytes a step: each step is emulated on some hosts */
    call load_kernel_gdt
    movq %r12, %rdi
    call main
1:  cli
    hlt
    jmp 1b

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
