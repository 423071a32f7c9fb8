/* keyboard mode: polls the i8042 for scan codes and prints each one, so a
 * host program can press keys (Firecracker's SendCtrlAltDel, say) and see
 * what the guest received.  After the Ctrl-Alt-Del sequence it returns, and
 * the guest's finish step (a reset by default) ends the run. */

#include "keyboard.h"
#include "io.h"
#include "print.h"

#define I8042_DATA 0x60
#define I8042_STATUS 0x64
#define I8042_STATUS_OUTPUT_FULL 0x01

void run_keyboard(void)
{
    /* Set 1 codes (the controller translates by default): Ctrl down, Alt
     * down, then the extended Delete make code. */
    static const uint8_t ctrl_alt_del[] = { 0x1d, 0x38, 0xe0, 0x53 };
    unsigned matched = 0;
    kprintf("KEYBOARD READY\n");
    for (;;) {
        if (!(inb(I8042_STATUS) & I8042_STATUS_OUTPUT_FULL)) {
            __asm__ volatile("pause");
            continue;
        }
        uint8_t code = inb(I8042_DATA);
        kprintf("KEY %x\n", code);
        matched = code == ctrl_alt_del[matched] ? matched + 1 : (code == ctrl_alt_del[0] ? 1 : 0);
        if (matched == sizeof ctrl_alt_del) {
            kprintf("CTRL-ALT-DEL\n");
            return;
        }
    }
}
