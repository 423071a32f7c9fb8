#include "blkbench.h"
#include "io.h"
#include "platform.h"
#include "print.h"
#include "virtio.h"

#define SECTOR 512
#define DEFAULT_REQUEST_BYTES 4096
#define MAX_REQUEST_BYTES 65536
#define MAX_DEPTH 32
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1

/* blkbench drives the device itself, with a queue deeper than the shared
 * driver's, so that up to MAX_DEPTH requests (three descriptors each) are in
 * flight at once. It also finds the disk where QEMU's microvm machine puts
 * its virtio-mmio transports, so the same workload runs under both VMMs. */
#define BQ_SIZE 128


/* QEMU's microvm: 24 transports of 512 bytes from 0xfeb00000. */
#define QEMU_MMIO_FIRST 0xfeb00000ull
#define QEMU_MMIO_STRIDE 0x200ull
#define QEMU_MMIO_COUNT 24

/* Polls of Status for a reset to finish. */
#define RESET_SPINS 100000

/* Polls of the used ring without progress before the run is declared stuck. */
#define STUCK_SPINS (1ull << 32)

struct bench_header {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

static struct {
    struct vring_desc desc[BQ_SIZE] __attribute__((aligned(16)));
    struct {
        uint16_t flags;
        uint16_t idx;
        uint16_t ring[BQ_SIZE];
        uint16_t used_event;
    } avail __attribute__((aligned(2)));
    struct {
        uint16_t flags;
        uint16_t idx;
        struct vring_used_elem ring[BQ_SIZE];
        uint16_t avail_event;
    } used __attribute__((aligned(4096)));
} bq __attribute__((aligned(4096)));

static struct bench_header headers[MAX_DEPTH] __attribute__((aligned(16)));
/* Every request moves its data through the same buffer: the benchmark
 * never looks at what it reads, and writes store the same pattern. */
static uint8_t buffer[MAX_REQUEST_BYTES] __attribute__((aligned(4096)));
static volatile uint8_t statuses[MAX_DEPTH];
static struct virtio_dev device;

static const char *const names[] = { "seqread", "randread", "seqwrite", "randwrite" };

static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void fence(void) { __asm__ volatile("mfence" ::: "memory"); }

static uint32_t reg_read(unsigned reg) { return mmio_read32(device.base + reg); }
static void reg_write(unsigned reg, uint32_t v) { mmio_write32(device.base + reg, v); }

/* A 64-bit LCG is plenty to scatter requests over the disk. */
static uint64_t next_random(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return *state >> 33;
}

static int is_block(uint64_t base)
{
    return mmio_read32(base + REG_MAGIC) == VIRTIO_MAGIC && mmio_read32(base + REG_VERSION) == 2
        && mmio_read32(base + REG_DEVICE_ID) == VIRTIO_ID_BLOCK;
}

/* The first virtio-blk transport: swiftvm's device 0, else the lowest of
 * QEMU microvm's that holds a disk. Returns 0 when there is none. */
static uint64_t find_disk(void)
{
    if (is_block(virtio_mmio_base(0)))
        return virtio_mmio_base(0);
    for (unsigned i = 0; i < QEMU_MMIO_COUNT; i++)
        if (is_block(QEMU_MMIO_FIRST + QEMU_MMIO_STRIDE * i))
            return QEMU_MMIO_FIRST + QEMU_MMIO_STRIDE * i;
    return 0;
}

/* Resets the device and waits (a bounded number of polls) for the reset to finish. */
static int reset(void) { return virtio_reset_at(device.base, RESET_SPINS); }

/* Accepts VERSION_1 only (no EVENT_IDX: the guest polls and notifies after
 * each batch it posts), sets up queue 0 with BQ_SIZE entries, DRIVER_OK. */
static int activate(const char *name)
{
    if (reset()) {
        kprintf("FAIL %s: the device did not reset\n", name);
        return -1;
    }
    reg_write(REG_STATUS, STATUS_ACKNOWLEDGE);
    reg_write(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    reg_write(REG_DEVICE_FEATURES_SEL, 1);
    if (!(reg_read(REG_DEVICE_FEATURES) & (uint32_t)(VIRTIO_F_VERSION_1 >> 32))) {
        kprintf("FAIL %s: the device does not offer VIRTIO_F_VERSION_1\n", name);
        return -1;
    }
    reg_write(REG_DRIVER_FEATURES_SEL, 0);
    reg_write(REG_DRIVER_FEATURES, 0);
    reg_write(REG_DRIVER_FEATURES_SEL, 1);
    reg_write(REG_DRIVER_FEATURES, (uint32_t)(VIRTIO_F_VERSION_1 >> 32));
    reg_write(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    if (!(reg_read(REG_STATUS) & STATUS_FEATURES_OK)) {
        kprintf("FAIL %s: the device refused FEATURES_OK\n", name);
        return -1;
    }
    reg_write(REG_QUEUE_SEL, 0);
    uint32_t max = reg_read(REG_QUEUE_NUM_MAX);
    if (max < BQ_SIZE) {
        kprintf("FAIL %s: queue 0 holds %u entries, blkbench needs %u\n", name, max, BQ_SIZE);
        return -1;
    }
    virtio_set_rings_at(device.base, BQ_SIZE, (uint64_t)bq.desc, (uint64_t)&bq.avail, (uint64_t)&bq.used);
    reg_write(REG_QUEUE_READY, 1);
    reg_write(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    return 0;
}

void run_blkbench(const struct guest_params *p)
{
    const char *name = names[p->bench];
    uint64_t request_bytes = p->bench_frame ? p->bench_frame : DEFAULT_REQUEST_BYTES;
    uint64_t depth = p->bench_depth;
    if (request_bytes % SECTOR || request_bytes > MAX_REQUEST_BYTES) {
        kprintf("FAIL blkbench: testguest.bench_frame=%lu is not a multiple of 512 up to %u\n", request_bytes,
                MAX_REQUEST_BYTES);
        return;
    }
    if (depth < 1 || depth > MAX_DEPTH) {
        kprintf("FAIL blkbench: testguest.bench_depth=%lu is not 1 to %u\n", depth, MAX_DEPTH);
        return;
    }
    for (unsigned i = 0; i < BQ_SIZE; i++)
        bq.desc[i] = (struct vring_desc){ 0 };
    bq.avail.flags = VRING_AVAIL_F_NO_INTERRUPT;
    bq.avail.idx = 0;
    bq.used.idx = 0;
    device.name = "blkbench";
    device.base = find_disk();
    if (!device.base) {
        kprintf("FAIL blkbench: no virtio-blk device at 0x%lx or in QEMU microvm's transports at 0x%lx\n",
                (unsigned long)virtio_mmio_base(0), (unsigned long)QEMU_MMIO_FIRST);
        return;
    }
    if (activate(name))
        return;
    uint64_t capacity = virtio_config_read64(&device, 0);
    uint64_t blocks = capacity / (request_bytes / SECTOR);
    uint64_t requests = (p->bench_mib << 20) / request_bytes;
    if (blocks == 0) {
        kprintf("FAIL blkbench: the drive has %lu sectors, less than one request\n", capacity);
        return;
    }
    int write = p->bench == BENCH_SEQWRITE || p->bench == BENCH_RANDWRITE;
    int random = p->bench == BENCH_RANDREAD || p->bench == BENCH_RANDWRITE;
    for (unsigned i = 0; write && i < request_bytes; i++)
        buffer[i] = (uint8_t)i;
    for (unsigned s = 0; s < depth; s++) {
        /* Slot s owns descriptors 3s (header), 3s+1 (data), 3s+2 (status). */
        bq.desc[3 * s] = (struct vring_desc){ (uint64_t)&headers[s], sizeof headers[s], VRING_DESC_F_NEXT, (uint16_t)(3 * s + 1) };
        bq.desc[3 * s + 1] = (struct vring_desc){ (uint64_t)buffer, (uint32_t)request_bytes,
                                                  (uint16_t)(VRING_DESC_F_NEXT | (write ? 0 : VRING_DESC_F_WRITE)),
                                                  (uint16_t)(3 * s + 2) };
        bq.desc[3 * s + 2] = (struct vring_desc){ (uint64_t)&statuses[s], 1, VRING_DESC_F_WRITE, 0 };
    }

    /* The workload starts now: the host times it from this line (or the
     * boot-timer write) to the BENCH line. */
    kprintf("BENCH-START %s\n", name);
    boot_timer_signal();
    uint64_t seed = 1, failures = 0, issued = 0, done = 0;
    uint16_t next_avail = 0, last_used = 0;
    /* Fill every slot, then refill each slot as its request completes. */
    unsigned refill[MAX_DEPTH], nrefill = 0;
    for (unsigned s = 0; s < depth; s++)
        refill[nrefill++] = s;
    while (done < requests) {
        unsigned posted = 0;
        for (unsigned i = 0; i < nrefill && issued < requests; i++, issued++, posted++) {
            unsigned s = refill[i];
            uint64_t block = random ? next_random(&seed) % blocks : issued % blocks;
            headers[s] = (struct bench_header){ write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN, 0,
                                                block * (request_bytes / SECTOR) };
            statuses[s] = 0xff;
            bq.avail.ring[next_avail % BQ_SIZE] = (uint16_t)(3 * s);
            next_avail++;
        }
        nrefill = 0;
        if (posted) {
            barrier();
            *(volatile uint16_t *)&bq.avail.idx = next_avail;
            fence();
            reg_write(REG_QUEUE_NOTIFY, 0);
        }
        uint64_t spins = 0;
        while (*(volatile uint16_t *)&bq.used.idx == last_used) {
            if (++spins == STUCK_SPINS) {
                kprintf("FAIL blkbench: no request completed; %lu of %lu done\n", done, requests);
                reset();
                return;
            }
            cpu_relax();
        }
        barrier();
        uint16_t end = *(volatile uint16_t *)&bq.used.idx;
        while (last_used != end) {
            struct vring_used_elem e = bq.used.ring[last_used % BQ_SIZE];
            last_used++;
            unsigned s = e.id / 3;
            if (e.id % 3 || s >= depth || statuses[s] != 0)
                failures++;
            if (s < depth)
                refill[nrefill++] = s;
            done++;
        }
    }
    reset(); /* the device stops touching guest memory */
    kprintf("BENCH %s %lu requests, %lu bytes, %lu failed, %lu-byte requests, depth %lu\n", name, requests,
            requests * request_bytes, failures, request_bytes, depth);
}
