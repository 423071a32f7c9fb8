/* The initrd the VMM may load: where the zero page says it is, and that its
 * bytes arrived intact. */
#ifndef TESTGUEST_INITRD_H
#define TESTGUEST_INITRD_H

/* What the host test writes at the start and end of its initrd file. */
#define INITRD_HEAD "SWIFTVM-INITRD\n"
#define INITRD_TAIL "\nEND-INITRD\n"

/* Reports an `initrd` check when the zero page describes an initrd;
 * prints nothing when there is none. */
void check_initrd(void);

#endif
