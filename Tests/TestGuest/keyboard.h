#ifndef TESTGUEST_KEYBOARD_H
#define TESTGUEST_KEYBOARD_H

void run_keyboard(void);

#endif
