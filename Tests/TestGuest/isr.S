/* One 16-byte stub per vector.  Each pushes a dummy error code when the CPU
 * does not push one, then the vector number, so isr_common always sees the
 * same frame layout (struct isr_frame in idt.h). */

/* Exceptions for which the CPU pushes an error code (Intel SDM 6.15). */
#define HAS_ERROR_CODE(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

    .section .text
    .code64
    .balign 16
    .globl isr_stubs
isr_stubs:
    .set vector, 0
    .rept 256
    .balign 16
    .if !HAS_ERROR_CODE(vector)
    pushq $0
    .endif
    pushq $vector
    jmp isr_common
    .set vector, vector + 1
    .endr

/* Saves the registers the C ABI lets a callee clobber, calls
 * isr_dispatch(frame) on a 16-byte aligned stack, and returns. */
isr_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    movq %rsp, %rdi
    pushq %rbp
    movq %rsp, %rbp
    andq $-16, %rsp
    cld
    call isr_dispatch
    movq %rbp, %rsp
    popq %rbp
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp /* vector and error code */
    iretq
