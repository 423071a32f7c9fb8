/* Machine-level services of the VMM: boot timer and reset. */
#ifndef TESTGUEST_PLATFORM_H
#define TESTGUEST_PLATFORM_H

#define BOOT_TIMER_ADDR 0xc0000000ull
#define BOOT_TIMER_MAGIC 123

/* Asks the VMM to log the time since it started the guest. */
void boot_timer_signal(void);

/* Pulses the CPU reset line through the i8042 controller; the VMM exits
 * with status 0.  Halts for good if the reset never happens. */
__attribute__((noreturn)) void machine_reset(void);

/* Enters ACPI S5 through the FADT's sleep control register, as Linux's
 * `poweroff` does on a hardware-reduced machine: SLP_TYP = 5, SLP_EN. The
 * VMM exits with status 0.  Halts for good if nothing happens. */
__attribute__((noreturn)) void machine_poweroff(void);

#endif
