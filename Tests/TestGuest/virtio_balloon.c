/* The virtio-balloon<i> check (virtio 1.2, 5.5), driven the way Linux's
 * virtio_balloon drives the device: the guest follows num_pages, gives
 * pages to the inflate queue as arrays of 4 KiB page frame numbers (at most
 * 256 per request), takes them back through the deflate queue, writes
 * `actual` after each step, keeps one statistics buffer with the device
 * and refills it whenever the device hands it back, and reports a free
 * 2 MiB block on the reporting queue.
 *
 * The pages it gives come from the upper half of the RAM range the guest
 * image lives in (nothing of the guest is there), and are written first,
 * so the host has to back them; after the host discarded them they must
 * read as zero. See README.md for the parameters and lines. */
#include "apic.h"
#include "io.h"
#include "kstring.h"
#include "paging.h"
#include "print.h"
#include "report.h"
#include "virtio.h"
#include "zeropage.h"

/* Feature bits (5.5.3). */
#define BALLOON_F_STATS_VQ (1ull << 1)
#define BALLOON_F_DEFLATE_ON_OOM (1ull << 2)
#define BALLOON_F_REPORTING (1ull << 5)
#define BALLOON_F_CONFIGURABLE (BALLOON_F_STATS_VQ | BALLOON_F_DEFLATE_ON_OOM | BALLOON_F_REPORTING)

/* Configuration space (5.5.4). */
#define CFG_NUM_PAGES 0
#define CFG_ACTUAL 4

/* Transport registers this check reads itself (4.2.2). */
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK 0x064
#define INTERRUPT_CONFIG_CHANGE 2

/* Statistics tags (5.5.6.4). */
#define STAT_MINFLT 3
#define STAT_MEMFREE 4
#define STAT_MEMTOT 5
#define STAT_AVAIL 6
#define STAT_COUNT 4

#define PAGE ((uint64_t)4096)
#define PFNS_PER_REQUEST 256 /* Linux's VIRTIO_BALLOON_ARRAY_PFNS_MAX */
#define REPORT_BYTES ((uint64_t)2 << 20) /* one order-9 block, as Linux reports */
#define ALIGN_2M ((uint64_t)2 << 20)
#define REQUEST_TIMEOUT_US 2000000
#define LOWEST_POOL ((uint64_t)32 << 20) /* the guest image and its data end near 17 MiB */
#define DEFAULT_WAIT_MS 10000
#define TOUCH_MARK 0x5a5a000000000000ull

struct balloon_stat {
    uint16_t tag;
    uint64_t val;
} __attribute__((packed));

/* testguest.balloon*= words. */
struct balloon_params {
    int has_expect;
    uint64_t expect;     /* features the host configured */
    uint64_t touch_mib;  /* written before the first target */
    uint64_t wait_ms;    /* longest wait for each target change */
    int deflate;         /* wait for a lower target and deflate */
};

struct balloon {
    struct virtio_dev d;
    unsigned q_stats, q_report;
    int has_stats, has_report;
    uint64_t ram_bytes;
    uint64_t pool_start, pool_pages; /* pages the balloon may take */
    uint64_t touched;                /* pool pages written so far */
    uint32_t actual;                 /* pages in the balloon */
    unsigned stats_refreshes;
    int config_irq_seen;
};

static uint32_t pfns[PFNS_PER_REQUEST] __attribute__((aligned(16)));
static struct balloon_stat stats[STAT_COUNT] __attribute__((aligned(16)));

/* ---- Command line -------------------------------------------------- */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n'; }

static int has_prefix(const char *w, uint64_t len, const char *key, const char **value, uint64_t *vlen)
{
    uint64_t klen = strnlen(key, 64);
    if (len < klen || strncmp(w, key, klen) != 0)
        return 0;
    *value = w + klen;
    *vlen = len - klen;
    return 1;
}

static int parse_number(const char *s, uint64_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 12)
        return 0;
    for (uint64_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 1;
}

/* "oom,stats,reporting" -> feature bits; an unknown name sets bit 63 so
 * the check fails with the list it was given. */
static uint64_t parse_features(const char *v, uint64_t len)
{
    uint64_t bits = 0;
    uint64_t i = 0;
    while (i < len) {
        uint64_t start = i;
        while (i < len && v[i] != ',')
            i++;
        uint64_t n = i - start;
        if (n == 3 && strncmp(v + start, "oom", 3) == 0)
            bits |= BALLOON_F_DEFLATE_ON_OOM;
        else if (n == 5 && strncmp(v + start, "stats", 5) == 0)
            bits |= BALLOON_F_STATS_VQ;
        else if (n == 9 && strncmp(v + start, "reporting", 9) == 0)
            bits |= BALLOON_F_REPORTING;
        else if (n == 4 && strncmp(v + start, "none", 4) == 0)
            ;
        else if (n > 0)
            bits |= 1ull << 63;
        i++;
    }
    return bits;
}

static void parse_params(struct balloon_params *p)
{
    p->has_expect = 0;
    p->expect = 0;
    p->touch_mib = 0;
    p->wait_ms = DEFAULT_WAIT_MS;
    p->deflate = 1;
    const char *s = zeropage_cmdline();
    if (!s)
        return;
    while (*s) {
        while (is_space(*s))
            s++;
        const char *w = s;
        while (*s && !is_space(*s))
            s++;
        uint64_t len = (uint64_t)(s - w), vlen, n;
        const char *v;
        if (has_prefix(w, len, "testguest.balloon=", &v, &vlen)) {
            p->has_expect = 1;
            p->expect = parse_features(v, vlen);
        } else if (has_prefix(w, len, "testguest.balloon_touch_mib=", &v, &vlen) && parse_number(v, vlen, &n)) {
            p->touch_mib = n;
        } else if (has_prefix(w, len, "testguest.balloon_wait_ms=", &v, &vlen) && parse_number(v, vlen, &n)) {
            p->wait_ms = n;
        } else if (has_prefix(w, len, "testguest.balloon_deflate=", &v, &vlen) && parse_number(v, vlen, &n)) {
            p->deflate = n != 0;
        }
    }
}

/* ---- Memory -------------------------------------------------------- */

static volatile uint64_t *page_at(uint64_t pfn) { return (volatile uint64_t *)(pfn * PAGE); }

/* Sums e820 RAM, and picks the pool: the upper half of the RAM range
 * holding the guest image (16 MiB), minus a 2 MiB block at its top for
 * the free page report. */
static int choose_pool(struct balloon *b, uint64_t *report_base)
{
    const struct e820_entry *e;
    unsigned n = zeropage_e820(&e);
    uint64_t top = 0;
    b->ram_bytes = 0;
    for (unsigned i = 0; i < n; i++) {
        if (e[i].type != E820_RAM)
            continue;
        b->ram_bytes += e[i].size;
        if (e[i].addr <= 0x1000000 && e[i].addr + e[i].size > 0x1000000)
            top = (e[i].addr + e[i].size) & ~(ALIGN_2M - 1);
    }
    if (top > 3 * GIB)
        top = 3 * GIB;
    uint64_t end = top;
    if (b->has_report) {
        end -= REPORT_BYTES;
        *report_base = end;
    }
    uint64_t start = ((top / 2) + ALIGN_2M - 1) & ~(ALIGN_2M - 1);
    if (start < LOWEST_POOL)
        start = LOWEST_POOL;
    if (end <= start) {
        report_fail(b->d.name, "the RAM range holding the guest ends at 0x%lx; too little above 0x%lx to inflate",
                    top, start);
        return -1;
    }
    b->pool_start = start / PAGE;
    b->pool_pages = (end - start) / PAGE;
    return 0;
}

/* Writes pool pages up to `upto` (exclusive, counted from the pool start),
 * so the host must back them. */
static void touch_pool(struct balloon *b, uint64_t upto)
{
    for (; b->touched < upto; b->touched++) {
        uint64_t pfn = b->pool_start + b->touched;
        *page_at(pfn) = TOUCH_MARK | pfn;
    }
}

/* ---- The device ---------------------------------------------------- */

static uint32_t num_pages(struct balloon *b) { return virtio_config_read32(&b->d, CFG_NUM_PAGES); }

static void fill_stats(struct balloon *b)
{
    uint64_t free_pages = b->pool_pages - b->actual;
    stats[0].tag = STAT_MEMTOT;
    stats[0].val = b->ram_bytes;
    stats[1].tag = STAT_MEMFREE;
    stats[1].val = free_pages * PAGE;
    stats[2].tag = STAT_AVAIL;
    stats[2].val = free_pages * PAGE;
    /* Counts the refreshes, so the host sees fresh values arrive. */
    stats[3].tag = STAT_MINFLT;
    stats[3].val = b->stats_refreshes;
}

static int post_stats(struct balloon *b)
{
    fill_stats(b);
    struct virtio_buf buf = { stats, sizeof stats, 0 };
    if (virtio_post(&b->d, b->q_stats, &buf, 1) < 0) {
        report_fail(b->d.name, "the statistics queue had no free descriptor");
        return -1;
    }
    return 0;
}

/* What the driver does between steps: notes configuration change
 * interrupts in InterruptStatus (nobody takes the interrupt itself), and
 * refills the statistics buffer when the device handed it back. */
static int service(struct balloon *b)
{
    uint32_t st = mmio_read32(b->d.base + REG_INTERRUPT_STATUS);
    if (st & INTERRUPT_CONFIG_CHANGE)
        b->config_irq_seen = 1;
    if (st)
        mmio_write32(b->d.base + REG_INTERRUPT_ACK, st);
    if (b->has_stats) {
        uint32_t head, len;
        if (virtio_wait_used(&b->d, b->q_stats, 0, &head, &len) == 0) {
            b->stats_refreshes++;
            return post_stats(b);
        }
    }
    return 0;
}

enum wait_for { TARGET_ABOVE_ACTUAL, TARGET_BELOW_ACTUAL, STATS_REFRESHED };

/* Polls for up to wait_ms, serving the device meanwhile. */
static int wait_until(struct balloon *b, enum wait_for what, uint64_t wait_ms)
{
    for (uint64_t ms = 0; ms <= wait_ms; ms++) {
        if (service(b))
            return -1;
        if ((what == TARGET_ABOVE_ACTUAL && num_pages(b) > b->actual) ||
            (what == TARGET_BELOW_ACTUAL && num_pages(b) < b->actual) ||
            (what == STATS_REFRESHED && b->stats_refreshes >= 2))
            return 0;
        lapic_delay_us(1000);
    }
    return -1;
}

/* Sends the PFNs of `count` pages from pool index `first` on queue q, in
 * requests of up to 256, highest first (as an allocator hands them out). */
static int send_pages(struct balloon *b, unsigned q, uint64_t first, uint64_t count, const char *what)
{
    while (count > 0) {
        unsigned n = count > PFNS_PER_REQUEST ? PFNS_PER_REQUEST : (unsigned)count;
        for (unsigned i = 0; i < n; i++)
            pfns[i] = (uint32_t)(b->pool_start + first + n - 1 - i);
        struct virtio_buf buf = { pfns, n * 4, 0 };
        if (virtio_post(&b->d, q, &buf, 1) < 0) {
            report_fail(b->d.name, "%s queue %u had no free descriptor", what, q);
            return -1;
        }
        uint32_t head, len;
        if (virtio_wait_used(&b->d, q, REQUEST_TIMEOUT_US, &head, &len)) {
            report_fail(b->d.name, "%s request of %u PFNs (from 0x%lx) expected back within %u ms, the device kept it",
                        what, n, b->pool_start + first, REQUEST_TIMEOUT_US / 1000);
            return -1;
        }
        if (len != 0) {
            report_fail(b->d.name, "%s request used length expected 0 (the device writes nothing), got %u", what, len);
            return -1;
        }
        first += n;
        count -= n;
    }
    return 0;
}

/* Reports the 2 MiB block at `base` (written first) as one device-writable
 * range and checks the host discarded it: it reads as zero afterwards. */
static int report_free_block(struct balloon *b, uint64_t base)
{
    for (uint64_t a = base; a < base + REPORT_BYTES; a += PAGE)
        *(volatile uint64_t *)a = TOUCH_MARK | (a / PAGE);
    struct virtio_buf buf = { (void *)base, (uint32_t)REPORT_BYTES, 1 };
    if (virtio_post(&b->d, b->q_report, &buf, 1) < 0) {
        report_fail(b->d.name, "the reporting queue had no free descriptor");
        return -1;
    }
    uint32_t head, len;
    if (virtio_wait_used(&b->d, b->q_report, REQUEST_TIMEOUT_US, &head, &len)) {
        report_fail(b->d.name, "free page report of 2 MiB at 0x%lx expected back within %u ms", base,
                    REQUEST_TIMEOUT_US / 1000);
        return -1;
    }
    for (uint64_t a = base; a < base + REPORT_BYTES; a += PAGE) {
        uint64_t v = *(volatile uint64_t *)a;
        if (v != 0) {
            report_fail(b->d.name, "reported page at 0x%lx expected zero after the host discarded it, reads 0x%lx", a, v);
            return -1;
        }
    }
    kprintf("BALLOON REPORTED %lu\n", REPORT_BYTES);
    return 0;
}

static int run(struct balloon *b, const struct balloon_params *p, uint32_t *inflated, uint32_t *deflated)
{
    struct virtio_dev *d = &b->d;
    uint64_t offered = d->offered & BALLOON_F_CONFIGURABLE;
    if (p->has_expect && offered != p->expect) {
        report_fail(d->name, "balloon features expected 0x%lx (testguest.balloon=), offered 0x%lx", p->expect, offered);
        return -1;
    }
    b->has_stats = (d->offered & BALLOON_F_STATS_VQ) != 0;
    b->has_report = (d->offered & BALLOON_F_REPORTING) != 0;
    /* Queue numbers follow the negotiated features (5.5.2): no free page
     * hinting here, so reporting comes right after stats, or after deflate. */
    unsigned nq = 2;
    if (b->has_stats)
        b->q_stats = nq++;
    if (b->has_report)
        b->q_report = nq++;
    if (virtio_activate_queues(d, BALLOON_F_CONFIGURABLE, nq))
        return -1;
    uint64_t report_base = 0;
    if (choose_pool(b, &report_base))
        return -1;
    if (b->has_stats && post_stats(b))
        return -1;
    uint32_t initial = num_pages(b);
    kprintf("BALLOON READY target %u, pool %lu pages at 0x%lx\n", initial, b->pool_pages, b->pool_start * PAGE);
    if (b->has_report && report_free_block(b, report_base))
        return -1;

    if (p->touch_mib > 0) {
        uint64_t pages = p->touch_mib * 256;
        if (pages > b->pool_pages)
            pages = b->pool_pages;
        touch_pool(b, pages);
        kprintf("BALLOON TOUCHED %lu\n", pages);
    }

    /* Inflate towards the first target above zero. */
    if (wait_until(b, TARGET_ABOVE_ACTUAL, p->wait_ms)) {
        report_fail(d->name, "num_pages expected above actual (%u) within %lu ms, reads %u", b->actual, p->wait_ms,
                    num_pages(b));
        return -1;
    }
    uint32_t target = num_pages(b);
    if (target > b->pool_pages) {
        report_fail(d->name, "num_pages %u is more than the %lu pages this check can give", target, b->pool_pages);
        return -1;
    }
    uint32_t grow = target - b->actual;
    touch_pool(b, target);
    if (send_pages(b, 0, b->actual, grow, "inflate"))
        return -1;
    b->actual = target;
    virtio_config_write32(d, CFG_ACTUAL, b->actual);
    *inflated = grow;
    kprintf("BALLOON INFLATED %u\n", grow);

    if (p->deflate) {
        if (wait_until(b, TARGET_BELOW_ACTUAL, p->wait_ms)) {
            report_fail(d->name, "num_pages expected below actual (%u) within %lu ms, reads %u", b->actual,
                        p->wait_ms, num_pages(b));
            return -1;
        }
        uint32_t lower = num_pages(b);
        uint32_t shrink = b->actual - lower;
        if (send_pages(b, 1, lower, shrink, "deflate"))
            return -1;
        b->actual = lower;
        virtio_config_write32(d, CFG_ACTUAL, b->actual);
        /* The pages come back as the host left them: discarded, so zero.
         * Writing them again is the guest using its memory. */
        for (uint64_t i = lower; i < lower + shrink; i++) {
            uint64_t v = *page_at(b->pool_start + i);
            if (v != 0) {
                report_fail(d->name, "deflated page 0x%lx expected zero (discarded by the host), reads 0x%lx",
                            b->pool_start + i, v);
                return -1;
            }
            *page_at(b->pool_start + i) = TOUCH_MARK | (b->pool_start + i);
        }
        *deflated = shrink;
        kprintf("BALLOON DEFLATED %u\n", shrink);
    }
    /* A target that changed while the driver ran came with a configuration
     * change interrupt (4.2.2: InterruptStatus bit 1). */
    if ((target != initial || p->deflate) && !b->config_irq_seen) {
        report_fail(d->name, "InterruptStatus never showed a configuration change (bit 1) while num_pages changed");
        return -1;
    }
    /* Two hand-backs: the device can only return the refilled buffer after
     * it read it, so the host has seen fresh statistics at least once. */
    if (b->has_stats && wait_until(b, STATS_REFRESHED, p->wait_ms)) {
        report_fail(d->name, "the device handed the statistics buffer back %u times within %lu ms, expected 2",
                    b->stats_refreshes, p->wait_ms);
        return -1;
    }
    return 0;
}

void check_virtio_balloon(unsigned index)
{
    static struct balloon b;
    char name[24];
    struct balloon_params p;
    ksnprintf(name, sizeof name, "virtio-balloon%u", index);
    memset(&b, 0, sizeof b);
    parse_params(&p);
    if (virtio_begin(&b.d, index, VIRTIO_ID_BALLOON, name))
        return;
    uint32_t inflated = 0, deflated = 0;
    int failed = run(&b, &p, &inflated, &deflated);
    virtio_end(&b.d);
    if (!failed)
        report_pass(name, "inflated %u pages, deflated %u (zero after discard), %u statistics refreshes, %s",
                    inflated, deflated, b.stats_refreshes,
                    b.has_report ? "2 MiB reported free and zeroed" : "no free page reporting");
}
