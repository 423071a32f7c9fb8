/* Hostile mode: one vCPU misbehaves, vCPU 0 keeps a block device busy.
 *
 *   notify   the first AP writes QueueNotify of the entropy device (queue 0
 *            and a queue that does not exist) in a tight loop, forever;
 *            vCPU 0 also takes 16 random bytes from that device per line
 *   requeue  vCPU 0 changes the entropy device's live queue (QueueReady 0,
 *            then QueueNum and the ring addresses) after DRIVER_OK, checks
 *            what the device reports, and resets and recovers it
 *   deaf     nobody ever reads the UART's receive register; the lines show
 *            whether input is waiting (LSR.DR)
 *   chatter  the first AP writes console lines as fast as the UART takes
 *            them, forever
 *
 * Every kind then reads one sector at a time from device 0 and prints a
 * progress line every PROGRESS_EVERY reads. */
#include "hostile.h"
#include "io.h"
#include "print.h"
#include "uart.h"
#include "virtio.h"

#define SECTOR_BYTES 512
#define PATTERN_SECTORS 16 /* sectors 0..15 hold (k * 7 + j) & 0xff */
#define PROGRESS_EVERY 32
#define RNG_BYTES 16
#define RNG_TIMEOUT_US 2000000
#define STALE_WAIT_US 300000


#define VIRTIO_BLK_T_IN 0

struct blk_header {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

static struct virtio_dev blk, rng;
static struct blk_header header __attribute__((aligned(16)));
static uint8_t sector[SECTOR_BYTES] __attribute__((aligned(512)));
static uint8_t entropy[RNG_BYTES] __attribute__((aligned(16)));
static volatile uint8_t blk_status;

static enum hostile_kind kind;
static const char *kind_name;
static volatile int enabled;     /* hostile mode runs: APs may be claimed */
static volatile int ap_go;       /* set by vCPU 0 once the devices are live */
static volatile int ap_claimed;  /* the first AP to arrive does the work */
static volatile uint64_t ap_actions; /* notifications written or lines printed */

/* A ticket lock keeps lines whole when two vCPUs print, and lets each
 * take its turn however eagerly the other prints. */
static volatile uint32_t next_ticket, now_serving;

static void print_lock(void)
{
    uint32_t ticket = __atomic_fetch_add(&next_ticket, 1, __ATOMIC_ACQUIRE);
    while (__atomic_load_n(&now_serving, __ATOMIC_ACQUIRE) != ticket)
        cpu_relax();
}

static void print_unlock(void)
{
    __atomic_store_n(&now_serving, now_serving + 1, __ATOMIC_RELEASE);
}

static uint32_t reg_read(const struct virtio_dev *d, unsigned reg) { return mmio_read32(d->base + reg); }
static void reg_write(const struct virtio_dev *d, unsigned reg, uint32_t v) { mmio_write32(d->base + reg, v); }

/* Reads sector k: 0 when it holds the pattern, 1 when its bytes differ,
 * -1 when the request failed. */
static int read_sector(uint64_t k)
{
    header.type = VIRTIO_BLK_T_IN;
    header.reserved = 0;
    header.sector = k;
    blk_status = 0xff;
    struct virtio_buf bufs[3] = {
        { &header, sizeof header, 0 },
        { sector, SECTOR_BYTES, 1 },
        { (void *)&blk_status, 1, 1 },
    };
    uint32_t used;
    if (virtio_transfer(&blk, bufs, 3, 0, "read", &used) || blk_status != 0)
        return -1;
    for (unsigned j = 0; j < SECTOR_BYTES; j++)
        if (sector[j] != (uint8_t)(k * 7 + j))
            return 1;
    return 0;
}

/* One entropy request by polling: 1 when the device filled the buffer
 * within timeout_us, 0 when it did not use it. */
static int take_entropy(uint64_t timeout_us)
{
    struct virtio_buf buf = { entropy, RNG_BYTES, 1 };
    if (virtio_post(&rng, 0, &buf, 1) < 0)
        return 0;
    uint32_t head, len;
    if (virtio_wait_used(&rng, 0, timeout_us, &head, &len))
        return 0;
    virtio_ack(&rng);
    return len == RNG_BYTES;
}

static int start_rng(void)
{
    if (virtio_begin(&rng, 1, VIRTIO_ID_ENTROPY, "hostile-rng") || virtio_activate(&rng, 0))
        return -1;
    return 0;
}

/* Changes the live queue of the entropy device in one of two ways, then
 * reports the device status, whether a request is still served, and
 * whether a reset brings the device back. */
static void requeue_round(unsigned round)
{
    int before = take_entropy(RNG_TIMEOUT_US);
    reg_write(&rng, REG_QUEUE_SEL, 0);
    if (round == 0) {
        reg_write(&rng, REG_QUEUE_READY, 0);
    } else {
        reg_write(&rng, REG_QUEUE_NUM, 2);
        reg_write(&rng, REG_QUEUE_NUM, 0x10000);
        reg_write(&rng, REG_QUEUE_DESC_LOW, 0xfffff000u);
        reg_write(&rng, REG_QUEUE_DESC_HIGH, 0xffffffffu);
        reg_write(&rng, REG_QUEUE_DRIVER_LOW, 0x1000);
        reg_write(&rng, REG_QUEUE_DEVICE_LOW, 0x2000);
        reg_write(&rng, REG_QUEUE_READY, 1);
        reg_write(&rng, REG_QUEUE_SEL, 99);
        reg_write(&rng, REG_QUEUE_NUM, 8);
        reg_write(&rng, REG_QUEUE_SEL, 0);
    }
    uint32_t status = reg_read(&rng, REG_STATUS);
    uint32_t ready = reg_read(&rng, REG_QUEUE_READY);
    int served = take_entropy(STALE_WAIT_US);
    int blk_ok = read_sector(round) == 0;
    int recovered = start_rng() == 0 && take_entropy(RNG_TIMEOUT_US);
    kprintf("HOSTILE requeue round %u (%s): served before %d, status 0x%x, needs-reset %d, queue ready %u, "
            "served after %d, blk %d, recovered %d\n",
            round, round == 0 ? "QueueReady 0" : "QueueNum and ring addresses", before, status,
            (status & STATUS_NEEDS_RESET) != 0, ready, served, blk_ok, recovered);
}

void hostile_prepare(const struct guest_params *params)
{
    static const char *const names[] = { "notify", "requeue", "deaf", "chatter" };
    kind = params->hostile;
    kind_name = names[kind];
    __atomic_store_n(&enabled, kind == HOSTILE_NOTIFY || kind == HOSTILE_CHATTER, __ATOMIC_RELEASE);
}

void hostile_ap_work(void)
{
    if (!__atomic_load_n(&enabled, __ATOMIC_ACQUIRE))
        return;
    if (__atomic_exchange_n(&ap_claimed, 1, __ATOMIC_ACQ_REL))
        return;
    while (!__atomic_load_n(&ap_go, __ATOMIC_ACQUIRE))
        cpu_relax();
    if (kind == HOSTILE_NOTIFY) {
        uint64_t doorbell = rng.base + REG_QUEUE_NOTIFY;
        for (;;) {
            mmio_write32(doorbell, 0);
            mmio_write32(doorbell, 7); /* a queue the device does not have */
            ap_actions += 2;
        }
    }
    if (kind == HOSTILE_CHATTER) {
        for (;;) {
            print_lock();
            kprintf("CHATTER %lu 0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\n",
                    ap_actions);
            print_unlock();
            ap_actions++;
        }
    }
    halt_forever();
}

void run_hostile(const struct guest_params *params)
{
    hostile_prepare(params);
    if (virtio_begin(&blk, 0, VIRTIO_ID_BLOCK, "hostile-blk") || virtio_activate(&blk, 0))
        return;
    if (start_rng())
        return;
    uint64_t capacity = virtio_config_read64(&blk, 0);
    if (capacity < PATTERN_SECTORS) {
        kprintf("FAIL hostile: the drive has %lu sectors, expected at least %u\n", capacity, PATTERN_SECTORS);
        return;
    }
    int needs_ap = kind == HOSTILE_NOTIFY || kind == HOSTILE_CHATTER;
    kprintf("HOSTILE %s start: %lu sectors, %s\n", kind_name, capacity,
            needs_ap ? (ap_claimed ? "an AP is ready" : "no AP came up") : "vCPU 0 only");
    if (kind == HOSTILE_REQUEUE) {
        requeue_round(0);
        requeue_round(1);
    }
    __atomic_store_n(&ap_go, 1, __ATOMIC_RELEASE);

    uint64_t reads = 0, bad = 0, failed = 0, entropy_ok = 0, entropy_missed = 0;
    for (;;) {
        int r = read_sector(reads % PATTERN_SECTORS);
        reads++;
        if (r > 0)
            bad++;
        if (r < 0)
            failed++;
        if (reads % PROGRESS_EVERY)
            continue;
        if (kind == HOSTILE_NOTIFY) {
            if (take_entropy(RNG_TIMEOUT_US))
                entropy_ok++;
            else
                entropy_missed++;
        }
        print_lock();
        kprintf("HOSTILE %s blk %lu bad %lu failed %lu rng %lu missed %lu ap %lu rx-waiting %u\n", kind_name,
                reads, bad, failed, entropy_ok, entropy_missed, ap_actions,
                kind == HOSTILE_DEAF ? (unsigned)(inb(UART_BASE + UART_LSR) & UART_LSR_DR) : 0);
        print_unlock();
    }
}
