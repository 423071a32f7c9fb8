/* The virtio-rng<i> check (virtio 1.2, 5.4): the entropy device fills
 * writable buffers posted on its single queue. */
#include "kstring.h"
#include "print.h"
#include "report.h"
#include "virtio.h"

#define RNG_BYTES 64

static uint8_t entropy[2][RNG_BYTES] __attribute__((aligned(16)));

static int all_zero(const uint8_t *p, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static int run(struct virtio_dev *d)
{
    if (virtio_activate(d, 0))
        return -1;
    virtio_irq_route(d);
    memset(entropy, 0, sizeof entropy);
    for (int i = 0; i < 2; i++) {
        struct virtio_buf buf = { entropy[i], RNG_BYTES, 1 };
        char what[24];
        uint32_t used_len;
        ksnprintf(what, sizeof what, "buffer %d", i + 1);
        /* The first buffer completes by interrupt, the second by polling. */
        if (virtio_transfer(d, &buf, 1, i == 0, what, &used_len))
            return -1;
        if (used_len != RNG_BYTES) {
            report_fail(d->name, "%s: used length expected %u, got %u", what, RNG_BYTES, used_len);
            return -1;
        }
        if (all_zero(entropy[i], RNG_BYTES)) {
            report_fail(d->name, "%s: expected random bytes, got %u zero bytes", what, RNG_BYTES);
            return -1;
        }
    }
    if (memcmp(entropy[0], entropy[1], RNG_BYTES) == 0) {
        report_fail(d->name, "expected two different %u-byte buffers, got the same bytes twice", RNG_BYTES);
        return -1;
    }
    return 0;
}

void check_virtio_rng(unsigned index)
{
    char name[24];
    struct virtio_dev d;
    ksnprintf(name, sizeof name, "virtio-rng%u", index);
    if (virtio_begin(&d, index, VIRTIO_ID_ENTROPY, name))
        return;
    int failed = run(&d);
    virtio_end(&d);
    if (!failed)
        report_pass(name, "2 x %u random bytes, distinct, irq %u", RNG_BYTES, d.gsi);
}
