/* A small virtio 1.2 driver for the MMIO transport (version 2, section
 * 4.2) with one split virtqueue per device (section 2.7), completions
 * taken by interrupt or by polling the used ring. */
#ifndef TESTGUEST_VIRTIO_H
#define TESTGUEST_VIRTIO_H

#include <stdint.h>
#include "cmdline.h"

/* virtio-mmio registers (virtio 1.2, section 4.2.2), as offsets from a
 * transport's base, and the device status bits (section 2.1). */
#define REG_MAGIC 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK 0x064
#define REG_STATUS 0x070
#define REG_QUEUE_DESC_LOW 0x080
#define REG_QUEUE_DESC_HIGH 0x084
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DRIVER_HIGH 0x094
#define REG_QUEUE_DEVICE_LOW 0x0a0
#define REG_QUEUE_DEVICE_HIGH 0x0a4
#define REG_CONFIG_GENERATION 0x0fc
#define REG_CONFIG 0x100

#define VIRTIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_MMIO_VERSION 2

#define STATUS_ACKNOWLEDGE 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define STATUS_NEEDS_RESET 0x40
#define STATUS_FAILED 128

/* Where the VMM puts device i and which GSI it raises. */
#define VIRTIO_MMIO_FIRST 0xc0001000ull
#define VIRTIO_MMIO_STRIDE 0x1000ull
#define VIRTIO_FIRST_GSI 5

static inline uint64_t virtio_mmio_base(unsigned index) { return VIRTIO_MMIO_FIRST + VIRTIO_MMIO_STRIDE * index; }
static inline unsigned virtio_gsi(unsigned index) { return VIRTIO_FIRST_GSI + index; }

/* Device ids (section 5). */
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_ENTROPY 4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK 19

/* Queues a device may use (vsock has 3, the balloon up to 5). */
#define VIRTIO_MAX_QUEUES 5

#define VIRTIO_F_VERSION_1 (1ull << 32)

/* Split virtqueue layout (2.7): descriptor table, driver (avail) ring
 * and device (used) ring, each in guest memory the device reads. */
#define VQ_SIZE 8

#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2 /* the device writes this buffer */
#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct vring_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[VQ_SIZE];
    uint16_t used_event;
};

struct vring_used_elem {
    uint32_t id;
    uint32_t len;
};

struct vring_used {
    uint16_t flags;
    uint16_t idx;
    struct vring_used_elem ring[VQ_SIZE];
    uint16_t avail_event;
};

struct virtqueue {
    struct vring_desc desc[VQ_SIZE] __attribute__((aligned(16)));
    struct vring_avail avail __attribute__((aligned(2)));
    struct vring_used used __attribute__((aligned(4)));
    uint16_t next_avail; /* driver's copy of avail.idx */
    uint16_t last_used;  /* used.idx already consumed */
};

/* One buffer of a request: device-readable, or device-writable. */
struct virtio_buf {
    void *addr;
    uint32_t len;
    int device_writes;
};

struct virtio_dev {
    const char *name; /* check name, e.g. "virtio-blk0" */
    unsigned index;
    uint64_t base;
    unsigned gsi;
    uint8_t vector;
    uint64_t offered; /* device feature bits */
    struct virtqueue *vq; /* queue 0, for one-request-at-a-time devices */
    struct virtqueue *vqs[VIRTIO_MAX_QUEUES];
    unsigned nqueues;
};

/* Checks magic, version and device id, resets the device, sets
 * ACKNOWLEDGE and DRIVER and reads the offered features.  Returns 0, or
 * -1 after a FAIL line. */
/* The transport at `base`, for drivers that keep their own queues (blkbench):
 * writes 0 to Status and polls up to `spins` times for the reset to finish
 * (0, or -1 when it does not); programs the selected queue's size and ring
 * addresses (QueueReady is the caller's). */
int virtio_reset_at(uint64_t base, int spins);
void virtio_set_rings_at(uint64_t base, uint32_t size, uint64_t desc, uint64_t avail, uint64_t used);

int virtio_begin(struct virtio_dev *d, unsigned index, uint32_t device_id, const char *name);

/* Accepts VERSION_1 plus the wanted bits the device offers, sets
 * FEATURES_OK and checks that the device kept it; sets up queue 0 and
 * sets DRIVER_OK.  Returns 0 or -1 after a FAIL line. */
int virtio_activate(struct virtio_dev *d, uint64_t wanted);

/* Reads a 32-bit field of the device configuration space; 64-bit fields
 * are two such reads, repeated until ConfigGeneration is stable. */
uint64_t virtio_config_read64(struct virtio_dev *d, unsigned offset);

/* Routes the device's GSI to its vector on this CPU. */
void virtio_irq_route(struct virtio_dev *d);

/* Posts one descriptor chain and waits for the device to use it, by
 * interrupt (use_irq) or by polling.  *used_len gets the length the
 * device reports.  Returns 0, or -1 after a FAIL line naming what. */
int virtio_transfer(struct virtio_dev *d, const struct virtio_buf *bufs, unsigned n, int use_irq,
                    const char *what, uint32_t *used_len);

/* Resets the device so it stops touching guest memory, and masks its
 * IOAPIC pin. */
void virtio_end(struct virtio_dev *d);

/* Like virtio_activate, for devices with several queues: sets up queues
 * 0 .. nqueues-1 (each VQ_SIZE entries) and sets DRIVER_OK. */
int virtio_activate_queues(struct virtio_dev *d, uint64_t wanted, unsigned nqueues);

/* Posts one chain on queue q without waiting; several may be in flight, as
 * long as their descriptors fit the queue. Returns the chain's head, or -1
 * when the queue has no free descriptors. Notifies the device. */
int virtio_post(struct virtio_dev *d, unsigned q, const struct virtio_buf *bufs, unsigned n);

/* Waits up to timeout_us (by polling) for the device to use a chain of
 * queue q; gives its head and length and frees its descriptors. Returns 0,
 * or -1 on timeout (nothing is reported). */
int virtio_wait_used(struct virtio_dev *d, unsigned q, uint64_t timeout_us, uint32_t *head, uint32_t *len);

/* Reads and writes of the configuration space, by width. */
uint8_t virtio_config_read8(struct virtio_dev *d, unsigned offset);
uint16_t virtio_config_read16(struct virtio_dev *d, unsigned offset);
uint32_t virtio_config_read32(struct virtio_dev *d, unsigned offset);
void virtio_config_write32(struct virtio_dev *d, unsigned offset, uint32_t value);

/* Acknowledges whatever InterruptStatus shows (for drivers that poll). */
void virtio_ack(struct virtio_dev *d);

/* Runs the virtio device checks for testguest.virtio. */
void check_virtio(const struct guest_params *params);

/* Device checks (virtio_blk.c, virtio_rng.c). */
void check_virtio_blk(unsigned index, enum virtio_kind kind);
void check_virtio_rng(unsigned index);
void check_virtio_net(unsigned index);
void check_virtio_vsock(unsigned index);
void check_virtio_balloon(unsigned index);

#endif
