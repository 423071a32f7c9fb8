#include "blkbench.h"
#include "platform.h"
#include "print.h"
#include "virtio.h"

#define REQUEST_BYTES 4096
#define SECTOR 512
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1

struct bench_header {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

static struct bench_header header __attribute__((aligned(16)));
static uint8_t buffer[REQUEST_BYTES] __attribute__((aligned(4096)));
static volatile uint8_t status;
static struct virtio_dev device;

static const char *const names[] = { "seqread", "randread", "seqwrite", "randwrite" };

/* A 64-bit LCG is plenty to scatter requests over the disk. */
static uint64_t next_random(uint64_t *state)
{
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return *state >> 33;
}

void run_blkbench(const struct guest_params *p)
{
    const char *name = names[p->bench];
    if (virtio_begin(&device, 0, VIRTIO_ID_BLOCK, "blkbench") || virtio_activate(&device, 0))
        return;
    uint64_t capacity = virtio_config_read64(&device, 0);
    uint64_t blocks = capacity / (REQUEST_BYTES / SECTOR);
    uint64_t requests = (p->bench_mib << 20) / REQUEST_BYTES;
    if (blocks == 0) {
        kprintf("FAIL blkbench: the drive has %lu sectors, less than one request\n", capacity);
        return;
    }
    int write = p->bench == BENCH_SEQWRITE || p->bench == BENCH_RANDWRITE;
    int random = p->bench == BENCH_RANDREAD || p->bench == BENCH_RANDWRITE;
    for (unsigned i = 0; i < REQUEST_BYTES; i++)
        buffer[i] = (uint8_t)i;

    boot_timer_signal(); /* the workload starts now */
    uint64_t seed = 1, failures = 0;
    for (uint64_t r = 0; r < requests; r++) {
        uint64_t block = random ? next_random(&seed) % blocks : r % blocks;
        header.type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
        header.reserved = 0;
        header.sector = block * (REQUEST_BYTES / SECTOR);
        status = 0xff;
        struct virtio_buf bufs[3] = {
            { &header, sizeof header, 0 },
            { buffer, REQUEST_BYTES, !write },
            { (void *)&status, 1, 1 },
        };
        uint32_t used;
        if (virtio_transfer(&device, bufs, 3, 0, name, &used) || status != 0)
            failures++;
    }
    virtio_end(&device);
    kprintf("BENCH %s %lu requests, %lu bytes, %lu failed\n", name, requests, requests * REQUEST_BYTES, failures);
}
