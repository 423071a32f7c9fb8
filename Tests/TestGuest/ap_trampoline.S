/* Application processor start-up code.  The BSP copies the bytes between
 * ap_trampoline_start and ap_trampoline_end to AP_TRAMPOLINE_BASE and sends
 * SIPI; the AP begins in real mode at CS:IP = (AP_TRAMPOLINE_BASE >> 4):0.
 * Because it runs from the copy, every address inside the trampoline is
 * computed as AP_TRAMPOLINE_BASE + (label - ap_trampoline_start).
 *
 * Path: real mode -> 32-bit protected mode -> long mode (PAE, the BSP's
 * CR3, EFER.LME, paging) -> jump to ap_entry64 in the image. */
#include "smp.h"

#define TRAMPOLINE_ADDR(label) (AP_TRAMPOLINE_BASE + ((label) - ap_trampoline_start))
#define CODE32 0x08
#define DATA 0x10
#define CODE64 0x18
#define CR0_PE 0x1
#define CR0_PG 0x80000000
#define CR4_PAE 0x20
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100

    .section .rodata
    .globl ap_trampoline_start, ap_trampoline_end, ap_trampoline_cr3
ap_trampoline_start:
    .code16
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    /* In real mode the operand is DS-relative, i.e. an offset in the copy. */
    lgdtl (tr_gdtr - ap_trampoline_start)
    movl %cr0, %eax
    orl $CR0_PE, %eax
    movl %eax, %cr0
    ljmpl $CODE32, $TRAMPOLINE_ADDR(tr_protected)

    .code32
tr_protected:
    movw $DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl TRAMPOLINE_ADDR(ap_trampoline_cr3), %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl %cr0, %eax
    orl $CR0_PG, %eax
    movl %eax, %cr0        /* long mode is active from here (EFER.LMA) */
    ljmpl $CODE64, $TRAMPOLINE_ADDR(tr_long)

    .code64
tr_long:
    movabsq $ap_entry64, %rax /* absolute: the image is identity-mapped */
    jmp *%rax

    .balign 8
tr_gdt:
    .quad 0
    .quad 0x00cf9b000000ffff /* 0x08: 32-bit code, flat, accessed */
    .quad 0x00cf93000000ffff /* 0x10: data, flat, accessed */
    .quad 0x00af9b000000ffff /* 0x18: 64-bit code, accessed */
tr_gdt_end:
tr_gdtr:
    .word tr_gdt_end - tr_gdt - 1
    .long TRAMPOLINE_ADDR(tr_gdt)
    .balign 4
/* Patched in the copy by the BSP: the page-table root the APs share. */
ap_trampoline_cr3:
    .long 0
ap_trampoline_end:
