#include "platform.h"
#include "io.h"

#define I8042_STATUS 0x64
#define I8042_COMMAND 0x64
#define I8042_INPUT_FULL 0x02
#define I8042_PULSE_RESET 0xfe
#define I8042_SPIN_LIMIT 1000

void boot_timer_signal(void)
{
    mmio_write8(BOOT_TIMER_ADDR, BOOT_TIMER_MAGIC);
}

void machine_reset(void)
{
    /* A real controller ignores commands while its input buffer is full. */
    for (int i = 0; i < I8042_SPIN_LIMIT && (inb(I8042_STATUS) & I8042_INPUT_FULL); i++)
        cpu_relax();
    outb(I8042_COMMAND, I8042_PULSE_RESET);
    halt_forever();
    __builtin_unreachable();
}

#define ACPI_SLEEP_CONTROL_PORT 0x600 /* swiftvm's FADT SLEEP_CONTROL_REG */
#define ACPI_SLP_TYP_S5 (5 << 2)
#define ACPI_SLP_EN 0x20

void machine_poweroff(void)
{
    outb(ACPI_SLEEP_CONTROL_PORT, ACPI_SLP_TYP_S5 | ACPI_SLP_EN);
    halt_forever();
    __builtin_unreachable();
}
