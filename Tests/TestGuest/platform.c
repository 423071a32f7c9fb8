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
