#include "virtio.h"
#include "apic.h"
#include "idt.h"
#include "io.h"
#include "kstring.h"
#include "report.h"

#define INTERRUPT_USED_BUFFER 1

/* Bounds for every wait: wall time from the LAPIC timer, and an
 * iteration count in case the timer does not run. */
#define RESET_SPINS 1000
#define COMPLETION_TIMEOUT_US 3000000 /* generous: a flush is an fsync on a loaded host */
#define COMPLETION_SPINS 1000000
#define IRQ_WATCHDOG_MS 500
#define IRQ_WAIT_LIMIT 1000
#define CONFIG_TRIES 4

static struct virtqueue queues[VIRTIO_MAX_DEVICES];
/* Queues 1 and up of multi-queue devices (queue 0 is queues[index]). */
static struct virtqueue more_queues[VIRTIO_MAX_DEVICES][VIRTIO_MAX_QUEUES - 1];
/* Per device and queue: descriptors in use, and each chain's length by head. */
static uint8_t desc_used[VIRTIO_MAX_DEVICES][VIRTIO_MAX_QUEUES][VQ_SIZE];
static uint8_t chain_length[VIRTIO_MAX_DEVICES][VIRTIO_MAX_QUEUES][VQ_SIZE];

/* Written by the interrupt handler, per device index. */
static volatile uint32_t irq_count[VIRTIO_MAX_DEVICES];
static volatile uint32_t irq_status[VIRTIO_MAX_DEVICES];
static volatile int watchdog_fired;

static uint32_t reg_read(const struct virtio_dev *d, unsigned reg) { return mmio_read32(d->base + reg); }
static void reg_write(const struct virtio_dev *d, unsigned reg, uint32_t v) { mmio_write32(d->base + reg, v); }

/* x86 keeps stores in order and loads in order, so a compiler barrier
 * orders ring updates; mfence before the doorbell also drains the store
 * buffer ahead of the uncached MMIO write. */
static inline void compiler_barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void full_barrier(void) { __asm__ volatile("mfence" ::: "memory"); }

static void on_virtio_irq(struct isr_frame *frame)
{
    unsigned index = (unsigned)frame->vector - VEC_VIRTIO_BASE;
    if (index < VIRTIO_MAX_DEVICES) {
        uint64_t base = virtio_mmio_base(index);
        uint32_t status = mmio_read32(base + REG_INTERRUPT_STATUS);
        mmio_write32(base + REG_INTERRUPT_ACK, status);
        irq_status[index] = status;
        irq_count[index]++;
    }
    lapic_eoi();
}

static void on_watchdog(struct isr_frame *frame)
{
    (void)frame;
    watchdog_fired = 1;
    lapic_eoi();
}

int virtio_reset_at(uint64_t base, int spins)
{
    mmio_write32(base + REG_STATUS, 0);
    for (int i = 0; i < spins; i++) {
        if (mmio_read32(base + REG_STATUS) == 0)
            return 0;
        cpu_relax();
    }
    return -1;
}

void virtio_set_rings_at(uint64_t base, uint32_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
    mmio_write32(base + REG_QUEUE_NUM, size);
    mmio_write32(base + REG_QUEUE_DESC_LOW, (uint32_t)desc);
    mmio_write32(base + REG_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
    mmio_write32(base + REG_QUEUE_DRIVER_LOW, (uint32_t)avail);
    mmio_write32(base + REG_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
    mmio_write32(base + REG_QUEUE_DEVICE_LOW, (uint32_t)used);
    mmio_write32(base + REG_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
}

static int reset(struct virtio_dev *d) { return virtio_reset_at(d->base, RESET_SPINS); }

static void fail_device(struct virtio_dev *d)
{
    reg_write(d, REG_STATUS, reg_read(d, REG_STATUS) | STATUS_FAILED);
}

int virtio_begin(struct virtio_dev *d, unsigned index, uint32_t device_id, const char *name)
{
    d->name = name;
    d->index = index;
    d->base = virtio_mmio_base(index);
    d->gsi = virtio_gsi(index);
    d->vector = (uint8_t)(VEC_VIRTIO_BASE + index);
    d->vq = &queues[index];
    d->offered = 0;

    uint32_t magic = reg_read(d, REG_MAGIC), version = reg_read(d, REG_VERSION), id = reg_read(d, REG_DEVICE_ID);
    if (magic != VIRTIO_MAGIC) {
        report_fail(name, "MagicValue at 0x%lx expected 0x%x, got 0x%x", d->base, VIRTIO_MAGIC, magic);
        return -1;
    }
    if (version != VIRTIO_MMIO_VERSION) {
        report_fail(name, "Version at 0x%lx expected %u, got %u", d->base + REG_VERSION, VIRTIO_MMIO_VERSION,
                    version);
        return -1;
    }
    if (id != device_id) {
        report_fail(name, "DeviceID at 0x%lx expected %u, got %u", d->base + REG_DEVICE_ID, device_id, id);
        return -1;
    }
    if (reset(d)) {
        report_fail(name, "Status expected 0 after reset, reads 0x%x", reg_read(d, REG_STATUS));
        return -1;
    }
    reg_write(d, REG_STATUS, STATUS_ACKNOWLEDGE);
    reg_write(d, REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);

    reg_write(d, REG_DEVICE_FEATURES_SEL, 0);
    uint64_t low = reg_read(d, REG_DEVICE_FEATURES);
    reg_write(d, REG_DEVICE_FEATURES_SEL, 1);
    uint64_t high = reg_read(d, REG_DEVICE_FEATURES);
    d->offered = low | high << 32;
    if (!(d->offered & VIRTIO_F_VERSION_1)) {
        report_fail(name, "device features expected VIRTIO_F_VERSION_1 (bit 32), got 0x%lx", d->offered);
        fail_device(d);
        return -1;
    }
    return 0;
}

static int setup_queue_n(struct virtio_dev *d, unsigned q)
{
    struct virtqueue *vq = d->vqs[q];
    reg_write(d, REG_QUEUE_SEL, q);
    uint32_t ready = reg_read(d, REG_QUEUE_READY), max = reg_read(d, REG_QUEUE_NUM_MAX);
    if (ready != 0) {
        report_fail(d->name, "QueueReady of queue %u expected 0 after reset, got %u", q, ready);
        return -1;
    }
    if (max < VQ_SIZE) {
        report_fail(d->name, "QueueNumMax of queue %u expected at least %u, got %u", q, VQ_SIZE, max);
        return -1;
    }
    memset(vq, 0, sizeof *vq);
    uint64_t desc = (uint64_t)vq->desc, avail = (uint64_t)&vq->avail, used = (uint64_t)&vq->used;
    virtio_set_rings_at(d->base, VQ_SIZE, desc, avail, used);
    full_barrier();
    reg_write(d, REG_QUEUE_READY, 1);
    if ((ready = reg_read(d, REG_QUEUE_READY)) != 1) {
        report_fail(d->name, "QueueReady of queue %u expected 1 after setup, reads %u", q, ready);
        return -1;
    }
    memset(desc_used[d->index][q], 0, VQ_SIZE);
    return 0;
}

int virtio_activate(struct virtio_dev *d, uint64_t wanted)
{
    return virtio_activate_queues(d, wanted, 1);
}

int virtio_activate_queues(struct virtio_dev *d, uint64_t wanted, unsigned nqueues)
{
    if (nqueues < 1 || nqueues > VIRTIO_MAX_QUEUES) {
        report_fail(d->name, "the driver asked for %u queues (at most %u)", nqueues, VIRTIO_MAX_QUEUES);
        return -1;
    }
    d->nqueues = nqueues;
    d->vqs[0] = d->vq;
    for (unsigned q = 1; q < nqueues; q++)
        d->vqs[q] = &more_queues[d->index][q - 1];
    uint64_t accept = (wanted | VIRTIO_F_VERSION_1) & d->offered;
    reg_write(d, REG_DRIVER_FEATURES_SEL, 0);
    reg_write(d, REG_DRIVER_FEATURES, (uint32_t)accept);
    reg_write(d, REG_DRIVER_FEATURES_SEL, 1);
    reg_write(d, REG_DRIVER_FEATURES, (uint32_t)(accept >> 32));

    uint32_t status = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
    reg_write(d, REG_STATUS, status);
    uint32_t back = reg_read(d, REG_STATUS);
    if (!(back & STATUS_FEATURES_OK)) {
        report_fail(d->name, "Status expected FEATURES_OK to stay set after accepting features 0x%lx, reads 0x%x",
                    accept, back);
        fail_device(d);
        return -1;
    }
    for (unsigned q = 0; q < nqueues; q++) {
        if (setup_queue_n(d, q)) {
            fail_device(d);
            return -1;
        }
    }
    reg_write(d, REG_STATUS, status | STATUS_DRIVER_OK);
    back = reg_read(d, REG_STATUS);
    if (back != (status | STATUS_DRIVER_OK)) {
        report_fail(d->name, "Status expected 0x%x after DRIVER_OK, reads 0x%x", status | STATUS_DRIVER_OK, back);
        return -1;
    }
    return 0;
}

uint64_t virtio_config_read64(struct virtio_dev *d, unsigned offset)
{
    uint64_t v = 0;
    for (int i = 0; i < CONFIG_TRIES; i++) {
        uint32_t before = reg_read(d, REG_CONFIG_GENERATION);
        uint64_t low = reg_read(d, REG_CONFIG + offset);
        uint64_t high = reg_read(d, REG_CONFIG + offset + 4);
        v = low | high << 32;
        if (reg_read(d, REG_CONFIG_GENERATION) == before)
            break;
    }
    return v;
}

void virtio_irq_route(struct virtio_dev *d)
{
    idt_set_handler(d->vector, on_virtio_irq);
    lapic_enable(VEC_SPURIOUS);
    ioapic_route_edge(d->gsi, d->vector, (uint8_t)cpu_apic_id());
}

static int used_ready(const struct virtqueue *vq)
{
    return *(volatile const uint16_t *)&vq->used.idx != vq->last_used;
}

/* Halts until the device's interrupt arrives or the watchdog fires. */
static int wait_irq(struct virtio_dev *d, uint32_t before)
{
    idt_set_handler(VEC_WATCHDOG, on_watchdog);
    watchdog_fired = 0;
    lapic_timer_oneshot(VEC_WATCHDOG, IRQ_WATCHDOG_MS);
    for (int i = 0; i < IRQ_WAIT_LIMIT && irq_count[d->index] == before && !watchdog_fired; i++)
        irq_wait();
    lapic_timer_stop();
    idt_set_handler(VEC_WATCHDOG, 0);
    return irq_count[d->index] != before ? 0 : -1;
}

static int poll_used(const struct virtqueue *vq)
{
    lapic_stopwatch_start();
    for (int i = 0; i < COMPLETION_SPINS; i++) {
        if (used_ready(vq))
            return 0;
        if (lapic_elapsed_us() > COMPLETION_TIMEOUT_US)
            break;
        cpu_relax();
    }
    return used_ready(vq) ? 0 : -1;
}

int virtio_transfer(struct virtio_dev *d, const struct virtio_buf *bufs, unsigned n, int use_irq,
                    const char *what, uint32_t *used_len)
{
    struct virtqueue *vq = d->vq;
    /* One request in flight at a time, so its chain always starts at
     * descriptor 0. */
    for (unsigned i = 0; i < n; i++) {
        vq->desc[i].addr = (uint64_t)bufs[i].addr;
        vq->desc[i].len = bufs[i].len;
        vq->desc[i].flags = (uint16_t)((i + 1 < n ? VRING_DESC_F_NEXT : 0) |
                                       (bufs[i].device_writes ? VRING_DESC_F_WRITE : 0));
        vq->desc[i].next = (uint16_t)(i + 1 < n ? i + 1 : 0);
    }
    vq->avail.flags = use_irq ? 0 : VRING_AVAIL_F_NO_INTERRUPT;
    vq->avail.ring[vq->next_avail % VQ_SIZE] = 0;
    compiler_barrier(); /* descriptors and ring entry before the index */
    *(volatile uint16_t *)&vq->avail.idx = ++vq->next_avail;
    full_barrier(); /* the index is visible before the notification */

    uint32_t irqs_before = irq_count[d->index];
    reg_write(d, REG_QUEUE_NOTIFY, 0);

    if (use_irq) {
        if (wait_irq(d, irqs_before)) {
            report_fail(d->name, "%s: expected an interrupt on vector 0x%x (IOAPIC pin %u) within %u ms, none "
                        "arrived; InterruptStatus 0x%x, used idx %u (expected %u)", what, d->vector, d->gsi,
                        IRQ_WATCHDOG_MS, reg_read(d, REG_INTERRUPT_STATUS),
                        *(volatile uint16_t *)&vq->used.idx, (uint16_t)(vq->last_used + 1));
            return -1;
        }
        if (!(irq_status[d->index] & INTERRUPT_USED_BUFFER)) {
            report_fail(d->name, "%s: InterruptStatus expected bit 0 (used buffer), got 0x%x", what,
                        irq_status[d->index]);
            return -1;
        }
    }
    if (poll_used(vq)) {
        report_fail(d->name, "%s: expected the device to use the buffer within %u ms, used idx still %u", what,
                    COMPLETION_TIMEOUT_US / 1000, vq->last_used);
        return -1;
    }
    compiler_barrier(); /* the used index before the entry it covers */
    struct vring_used_elem e = vq->used.ring[vq->last_used % VQ_SIZE];
    vq->last_used++;
    if (!use_irq) {
        /* Nobody takes the interrupt; acknowledge it so the device's
         * interrupt status does not stay raised. */
        uint32_t st = reg_read(d, REG_INTERRUPT_STATUS);
        if (st)
            reg_write(d, REG_INTERRUPT_ACK, st);
    }
    if (e.id != 0) {
        report_fail(d->name, "%s: used element id expected 0 (the chain's head), got %u", what, e.id);
        return -1;
    }
    *used_len = e.len;
    return 0;
}

int virtio_post(struct virtio_dev *d, unsigned q, const struct virtio_buf *bufs, unsigned n)
{
    struct virtqueue *vq = d->vqs[q];
    uint8_t *used = desc_used[d->index][q];
    int slots[VQ_SIZE];
    unsigned found = 0;
    for (unsigned i = 0; i < VQ_SIZE && found < n; i++)
        if (!used[i])
            slots[found++] = (int)i;
    if (n == 0 || found < n)
        return -1;
    for (unsigned i = 0; i < n; i++) {
        struct vring_desc *desc = &vq->desc[slots[i]];
        desc->addr = (uint64_t)bufs[i].addr;
        desc->len = bufs[i].len;
        desc->flags = (uint16_t)((i + 1 < n ? VRING_DESC_F_NEXT : 0) | (bufs[i].device_writes ? VRING_DESC_F_WRITE : 0));
        desc->next = (uint16_t)(i + 1 < n ? slots[i + 1] : 0);
        used[slots[i]] = 1;
    }
    chain_length[d->index][q][slots[0]] = (uint8_t)n;
    vq->avail.flags = VRING_AVAIL_F_NO_INTERRUPT;
    vq->avail.ring[vq->next_avail % VQ_SIZE] = (uint16_t)slots[0];
    compiler_barrier();
    *(volatile uint16_t *)&vq->avail.idx = ++vq->next_avail;
    full_barrier();
    reg_write(d, REG_QUEUE_NOTIFY, q);
    return slots[0];
}

int virtio_wait_used(struct virtio_dev *d, unsigned q, uint64_t timeout_us, uint32_t *head, uint32_t *len)
{
    struct virtqueue *vq = d->vqs[q];
    lapic_stopwatch_start();
    for (int i = 0; !used_ready(vq); i++) {
        if (i >= COMPLETION_SPINS * 10 || lapic_elapsed_us() > timeout_us)
            return -1;
        cpu_relax();
    }
    compiler_barrier();
    struct vring_used_elem e = vq->used.ring[vq->last_used % VQ_SIZE];
    vq->last_used++;
    if (e.id < VQ_SIZE) {
        /* Free the chain's descriptors by following it. */
        unsigned id = e.id, n = chain_length[d->index][q][id];
        for (unsigned i = 0; i < n && id < VQ_SIZE; i++) {
            desc_used[d->index][q][id] = 0;
            id = vq->desc[id].next;
        }
    }
    *head = e.id;
    *len = e.len;
    return 0;
}

uint8_t virtio_config_read8(struct virtio_dev *d, unsigned offset)
{
    return mmio_read8(d->base + REG_CONFIG + offset);
}

uint16_t virtio_config_read16(struct virtio_dev *d, unsigned offset)
{
    return mmio_read16(d->base + REG_CONFIG + offset);
}

uint32_t virtio_config_read32(struct virtio_dev *d, unsigned offset)
{
    return reg_read(d, REG_CONFIG + offset);
}

void virtio_config_write32(struct virtio_dev *d, unsigned offset, uint32_t value)
{
    reg_write(d, REG_CONFIG + offset, value);
}

void virtio_ack(struct virtio_dev *d)
{
    uint32_t st = reg_read(d, REG_INTERRUPT_STATUS);
    if (st)
        reg_write(d, REG_INTERRUPT_ACK, st);
}

void virtio_end(struct virtio_dev *d)
{
    reset(d);
    ioapic_mask(d->gsi);
}

void check_virtio(const struct guest_params *params)
{
    if (!params->has_virtio) {
        report_skip("virtio", "testguest.virtio not given");
        return;
    }
    if (params->virtio_overflow)
        report_fail("virtio", "testguest.virtio lists more than %u devices; only the first %u are checked",
                    VIRTIO_MAX_DEVICES, VIRTIO_MAX_DEVICES);
    for (unsigned i = 0; i < params->virtio_count; i++) {
        switch (params->virtio[i]) {
        case VIRTIO_BLK_RW:
        case VIRTIO_BLK_RO:
        case VIRTIO_BLK_WB:
            check_virtio_blk(i, params->virtio[i]);
            break;
        case VIRTIO_RNG:
            check_virtio_rng(i);
            break;
        case VIRTIO_NET:
            check_virtio_net(i);
            break;
        case VIRTIO_VSOCK:
            check_virtio_vsock(i);
            break;
        case VIRTIO_BALLOON:
            check_virtio_balloon(i);
            break;
        case VIRTIO_UNKNOWN:
            report_fail("virtio", "device %u: testguest.virtio kind expected rw, ro, wb, rng, net, vsock or balloon", i);
            break;
        }
    }
}
