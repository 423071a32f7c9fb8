#include "report.h"
#include "virtio.h"

/* The virtio-balloon check: not written yet. */
void check_virtio_balloon(unsigned index)
{
    (void)index;
    report_skip("virtio-balloon", "no driver for this device in the test guest yet");
}
