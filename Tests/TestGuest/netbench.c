/* The network benchmark workloads (testguest.mode=netbench): bulk data over
 * virtio-net (raw Ethernet frames to and from a host program on the TAP)
 * and over virtio-vsock (one stream to and from a host program on
 * swiftvm's Unix sockets), for scripts/bench-net.sh.
 *
 * The guest never touches the payload bytes: on this project's hosts KVM
 * emulates the guest's instructions, so the guest only writes headers and
 * sequence numbers, keeps every descriptor of the 8-entry queues busy with
 * one-descriptor chains, notifies once per batch, and halts with the
 * queues' interrupt on while it waits.  What is measured is the host: the
 * VMM moving the bytes between guest memory and the TAP or the Unix socket.
 *
 *   net-tx    frames of bench_frame bytes (Ethernet header included) to the
 *             host, ethertype 0x88b5, NETBENCH_DATA_TAG and a sequence
 *             number; done when the device has used every chain.
 *   net-rx    the host sends the same kind of frames to the guest's MAC; the
 *             guest checks the sequence, counts, and every
 *             NETBENCH_ACK_EVERY frames sends an acknowledgement frame
 *             (NETBENCH_ACK_TAG, next sequence number, frames, bytes), which
 *             the host uses as its window so the TAP's queue never overflows.
 *   vsock-tx  connects to host port NETBENCH_VSOCK_PORT (<uds>_5201) and
 *             sends RW packets of bench_frame payload bytes within the
 *             host's credit, then SHUTDOWN; done at the device's RST, i.e.
 *             once every byte was written to the host socket.
 *   vsock-rx  listens on NETBENCH_VSOCK_PORT; the host program connects
 *             (CONNECT 5201) and writes; rx buffers hold bench_frame
 *             payload bytes; done at the host's end of stream.
 */
#include "netbench.h"
#include "apic.h"
#include "idt.h"
#include "io.h"
#include "kstring.h"
#include "print.h"
#include "report.h"
#include "virtio.h"
#include "virtio_vsock.h"

#define CHECK "netbench"
#define SLOTS VQ_SIZE /* one-descriptor chains: one slot per descriptor */

#define NET_F_MAC (1ull << 5)
#define NET_RXQ 0
#define NET_TXQ 1
#define NET_HDR_LEN 12
#define ETH_HLEN 14
#define NET_MIN_FRAME 60    /* room for the tag and the sequence number */
#define NET_MAX_FRAME 65535 /* a TAP's largest MTU (65521) and the Ethernet header */
#define NET_DEFAULT_FRAME 1514
#define ACK_FRAME 64

#define VS_RXQ 0
#define VS_TXQ 1
#define VS_EVENTQ 2
#define VS_MAX_PAYLOAD 65536 /* swiftvm's largest packet */
#define VS_DEFAULT_PAYLOAD 4096
#define VS_GUEST_PORT 49200
#define VS_BUF_ALLOC (256u * 1024) /* what the guest tells the host it may send ahead */

#define SLOT_BYTES 65600 /* >= NET_HDR_LEN + NET_MAX_FRAME and VSOCK_HDR_SIZE + VS_MAX_PAYLOAD */

/* Wall-time limits (LAPIC timer) and a bound on the halts of every wait. */
#define IDLE_US 5000000ul
#define CONNECT_US 10000000ul
#define WAIT_HALTS 10000000ul

static const uint8_t host_mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };
static const char *const kind_names[] = { "net-tx", "net-rx", "vsock-tx", "vsock-rx" };

static uint8_t tx_slots[SLOTS][SLOT_BYTES] __attribute__((aligned(64)));
static uint8_t rx_slots[SLOTS][SLOT_BYTES] __attribute__((aligned(64)));
static uint32_t event_buf __attribute__((aligned(16)));

/* The data queues are driven here rather than through virtio_post and
 * virtio_wait_used, to keep the guest's instructions per frame few: slot i
 * of a queue is always descriptor i (one-descriptor chains), posting writes
 * a length and a ring entry, several posts share one notification (as
 * Linux batches its kicks), and taking a used chain is a memory read.
 * virtio.c still negotiates, sets up the queues and resets the device. */
#define REG_QUEUE_NOTIFY 0x050

struct ring {
    struct virtio_dev *dev;
    struct virtqueue *vq;
    unsigned queue;
    uint8_t (*slots)[SLOT_BYTES];
    uint8_t busy[SLOTS];
    unsigned unnotified; /* chains posted since the last notification */
};

static inline void compiler_barrier(void) { __asm__ volatile("" ::: "memory"); }

static void ring_init(struct ring *r, struct virtio_dev *dev, unsigned queue, uint8_t (*slots)[SLOT_BYTES])
{
    r->dev = dev;
    r->vq = dev->vqs[queue];
    r->queue = queue;
    r->slots = slots;
    r->unnotified = 0;
    memset(r->busy, 0, sizeof r->busy);
    for (unsigned i = 0; i < SLOTS; i++) {
        r->vq->desc[i].addr = (uint64_t)slots[i];
        r->vq->desc[i].next = 0;
    }
    /* No interrupts except while wait_either halts. */
    r->vq->avail.flags = VRING_AVAIL_F_NO_INTERRUPT;
}

static int used_pending(const struct ring *r)
{
    return *(volatile const uint16_t *)&r->vq->used.idx != r->vq->last_used;
}

static int free_slot(const struct ring *r)
{
    for (int i = 0; i < SLOTS; i++)
        if (!r->busy[i])
            return i;
    return -1;
}

/* Makes `len` bytes of slot `slot` (not in flight) available to the device;
 * ring_kick tells it. */
static void ring_post(struct ring *r, int slot, uint32_t len, int device_writes)
{
    struct virtqueue *vq = r->vq;
    vq->desc[slot].len = len;
    vq->desc[slot].flags = device_writes ? VRING_DESC_F_WRITE : 0;
    vq->avail.ring[vq->next_avail % VQ_SIZE] = (uint16_t)slot;
    compiler_barrier(); /* the descriptor and ring entry before the index */
    *(volatile uint16_t *)&vq->avail.idx = ++vq->next_avail;
    r->busy[slot] = 1;
    r->unnotified++;
}

/* Notifies the device of what was posted since the last notification. */
static void ring_kick(struct ring *r)
{
    if (!r->unnotified)
        return;
    __asm__ volatile("mfence" ::: "memory"); /* the index is visible before the doorbell */
    mmio_write32(r->dev->base + REG_QUEUE_NOTIFY, r->queue);
    r->unnotified = 0;
}

/* Takes one used chain if there is one: its slot (now free), -1 when there
 * is none, -2 after a FAIL line. */
static int ring_take(struct ring *r, uint32_t *len)
{
    struct virtqueue *vq = r->vq;
    if (!used_pending(r))
        return -1;
    compiler_barrier(); /* the used index before the entry it covers */
    struct vring_used_elem e = vq->used.ring[vq->last_used % VQ_SIZE];
    vq->last_used++;
    if (e.id >= SLOTS || !r->busy[e.id]) {
        report_fail(CHECK, "queue %u: the device used chain %u, which is not in flight", r->queue, e.id);
        return -2;
    }
    r->busy[e.id] = 0;
    *len = e.len;
    return (int)e.id;
}

static volatile int watchdog_fired;
static uint64_t halts; /* waits that halted for an interrupt */

static void on_watchdog(struct isr_frame *frame)
{
    (void)frame;
    watchdog_fired = 1;
    lapic_eoi();
}

/* Waits until either ring has a used chain; -1 after timeout_us.  The
 * guest halts with the device's interrupt enabled on both queues (virtio.c's
 * handler acknowledges it), as Linux's drivers do between bursts, so that a
 * waiting vCPU leaves the host's CPUs to the VMM and the host program. */
static int wait_either(struct ring *a, struct ring *b, uint64_t timeout_us)
{
    ring_kick(a);
    ring_kick(b);
    if (used_pending(a) || used_pending(b))
        return 0;
    a->vq->avail.flags = 0;
    b->vq->avail.flags = 0;
    __asm__ volatile("mfence" ::: "memory"); /* the flags before the used index is read again */
    int ready = used_pending(a) || used_pending(b);
    if (!ready) {
        halts++;
        idt_set_handler(VEC_WATCHDOG, on_watchdog);
        watchdog_fired = 0;
        lapic_timer_oneshot(VEC_WATCHDOG, (uint32_t)(timeout_us / 1000));
        /* Interrupts stay off between the check and sti; hlt, so none is lost. */
        for (uint64_t i = 0; i < WAIT_HALTS && !watchdog_fired && !(ready = used_pending(a) || used_pending(b)); i++)
            irq_wait();
        lapic_timer_stop();
        idt_set_handler(VEC_WATCHDOG, 0);
    }
    a->vq->avail.flags = VRING_AVAIL_F_NO_INTERRUPT;
    b->vq->avail.flags = VRING_AVAIL_F_NO_INTERRUPT;
    return ready ? 0 : -1;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Unaligned 64-bit loads: a tag compares in two instructions, not a byte loop. */
typedef uint64_t __attribute__((may_alias, aligned(1))) unaligned_u64;

static int same16(const uint8_t *a, const char *b)
{
    return *(const unaligned_u64 *)a == *(const unaligned_u64 *)b &&
           *(const unaligned_u64 *)(a + 8) == *(const unaligned_u64 *)(b + 8);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The slot of testguest.virtio that has `kind`, or 0. */
static unsigned device_index(const struct guest_params *p, enum virtio_kind kind)
{
    for (unsigned i = 0; p->has_virtio && i < p->virtio_count; i++)
        if (p->virtio[i] == kind)
            return i;
    return 0;
}

static void done_line(const char *kind, uint64_t units, uint64_t bytes, uint64_t lost, uint64_t other)
{
    kprintf("NETBENCH DONE %s units=%lu bytes=%lu lost=%lu other=%lu halts=%lu\n", kind, units, bytes, lost, other,
            halts);
}

/* ---- virtio-net ---- */

struct net {
    struct virtio_dev dev;
    struct ring rx, tx;
    uint8_t mac[6];
    uint64_t mac64; /* the MAC as a little-endian number, for comparing */
    uint32_t frame;  /* bytes per frame, Ethernet header included */
    uint64_t frames; /* frames the workload moves */
};

static int net_start(struct net *n, const struct guest_params *p)
{
    if (virtio_begin(&n->dev, device_index(p, VIRTIO_NET), VIRTIO_ID_NET, CHECK))
        return -1;
    if (n->dev.offered & NET_F_MAC) {
        for (int i = 0; i < 6; i++)
            n->mac[i] = virtio_config_read8(&n->dev, (unsigned)i);
    } else {
        static const uint8_t own[6] = { 0x06, 0x00, 0x5e, 0x57, 0x4d, 0x00 };
        memcpy(n->mac, own, 6);
    }
    for (int i = 5; i >= 0; i--)
        n->mac64 = n->mac64 << 8 | n->mac[i];
    /* No offloads, no mergeable buffers, no EVENT_IDX: each chain holds one
     * whole frame, and NO_INTERRUPT keeps the device from interrupting. */
    if (virtio_activate_queues(&n->dev, NET_F_MAC, 2))
        return -1;
    ring_init(&n->rx, &n->dev, NET_RXQ, rx_slots);
    ring_init(&n->tx, &n->dev, NET_TXQ, tx_slots);
    virtio_irq_route(&n->dev);
    return 0;
}

/* An Ethernet header and a tag after the virtio-net header (all zero). */
static void net_frame_header(uint8_t *slot, const uint8_t *dst, const uint8_t *src, const char *tag)
{
    memset(slot, 0, NET_HDR_LEN + ETH_HLEN + NETBENCH_TAG_LEN + 16);
    uint8_t *eth = slot + NET_HDR_LEN;
    memcpy(eth, dst, 6);
    memcpy(eth + 6, src, 6);
    eth[12] = NETBENCH_ETHERTYPE >> 8;
    eth[13] = NETBENCH_ETHERTYPE & 0xff;
    memcpy(eth + ETH_HLEN, tag, NETBENCH_TAG_LEN);
}

static int net_tx(struct net *n)
{
    for (int i = 0; i < SLOTS; i++)
        net_frame_header(tx_slots[i], host_mac, n->mac, NETBENCH_DATA_TAG);
    kprintf("NETBENCH READY net-tx\n");
    uint64_t posted = 0, done = 0;
    while (done < n->frames) {
        int slot;
        while (posted < n->frames && (slot = free_slot(&n->tx)) >= 0) {
            put32(tx_slots[slot] + NET_HDR_LEN + ETH_HLEN + NETBENCH_TAG_LEN, (uint32_t)posted);
            ring_post(&n->tx, slot, NET_HDR_LEN + n->frame, 0);
            posted++;
        }
        ring_kick(&n->tx);
        if (wait_either(&n->tx, &n->tx, IDLE_US)) {
            report_fail(CHECK, "net-tx: the device used no transmit chain in %lu ms (%lu of %lu frames done)",
                        IDLE_US / 1000, done, n->frames);
            return -1;
        }
        uint32_t len;
        while ((slot = ring_take(&n->tx, &len)) >= 0) {
            if (len != 0) {
                report_fail(CHECK, "net-tx: transmit used length expected 0, got %u", len);
                return -1;
            }
            done++;
        }
        if (slot == -2)
            return -1;
    }
    done_line("net-tx", done, done * n->frame, 0, 0);
    return 0;
}

/* Frees the transmit slots the device has used. */
static int reclaim(struct ring *r)
{
    uint32_t len;
    int slot;
    while ((slot = ring_take(r, &len)) >= 0)
        ;
    return slot == -2 ? -1 : 0;
}

/* A free transmit slot, waiting for one if all are in flight; -1 on failure. */
static int tx_slot(struct ring *tx)
{
    if (reclaim(tx))
        return -1;
    int slot = free_slot(tx);
    if (slot >= 0)
        return slot;
    if (wait_either(tx, tx, IDLE_US) || reclaim(tx) || (slot = free_slot(tx)) < 0) {
        report_fail(CHECK, "queue %u: no transmit chain came back in %lu ms", tx->queue, IDLE_US / 1000);
        return -1;
    }
    return slot;
}

static int net_ack(struct net *n, uint64_t next, uint64_t frames, uint64_t bytes)
{
    int slot = tx_slot(&n->tx);
    if (slot < 0)
        return -1;
    uint8_t *s = tx_slots[slot];
    net_frame_header(s, host_mac, n->mac, NETBENCH_ACK_TAG);
    uint8_t *ack = s + NET_HDR_LEN + ETH_HLEN + NETBENCH_TAG_LEN;
    put32(ack, (uint32_t)next);
    put32(ack + 4, (uint32_t)frames);
    put64(ack + 8, bytes);
    ring_post(&n->tx, slot, NET_HDR_LEN + ACK_FRAME, 0);
    ring_kick(&n->tx);
    return 0;
}

/* A data frame from the host to our MAC: its sequence number, or -1. */
static int64_t net_data_seq(const struct net *n, const uint8_t *slot, uint32_t len)
{
    const uint8_t *eth = slot + NET_HDR_LEN;
    /* Destination MAC and the first two bytes of the source in one load. */
    if (len < NET_HDR_LEN + ETH_HLEN + NETBENCH_TAG_LEN + 4 ||
        (*(const unaligned_u64 *)eth & 0xffffffffffffull) != n->mac64 || eth[12] != (NETBENCH_ETHERTYPE >> 8) ||
        eth[13] != (NETBENCH_ETHERTYPE & 0xff) || !same16(eth + ETH_HLEN, NETBENCH_DATA_TAG))
        return -1;
    return get32(eth + ETH_HLEN + NETBENCH_TAG_LEN);
}

static int net_rx(struct net *n)
{
    for (int i = 0; i < SLOTS; i++)
        ring_post(&n->rx, i, NET_HDR_LEN + NET_MAX_FRAME, 1);
    ring_kick(&n->rx);
    kprintf("NETBENCH READY net-rx\n");
    uint64_t frames = 0, bytes = 0, lost = 0, other = 0, expected = 0;
    while (frames + lost < n->frames) {
        if (wait_either(&n->rx, &n->tx, IDLE_US))
            break; /* reported below as lost */
        if (reclaim(&n->tx))
            return -1;
        int slot;
        uint32_t len;
        while ((slot = ring_take(&n->rx, &len)) >= 0) {
            int64_t seq = net_data_seq(n, rx_slots[slot], len);
            ring_post(&n->rx, slot, NET_HDR_LEN + NET_MAX_FRAME, 1);
            if (seq < 0) {
                other++;
                continue;
            }
            if ((uint64_t)seq > expected)
                lost += (uint64_t)seq - expected;
            expected = (uint64_t)seq + 1;
            frames++;
            bytes += len - NET_HDR_LEN;
            if (frames % NETBENCH_ACK_EVERY == 0 || frames + lost >= n->frames)
                if (net_ack(n, expected, frames, bytes))
                    return -1;
        }
        ring_kick(&n->rx);
        if (slot == -2)
            return -1;
    }
    if (frames + lost < n->frames)
        lost = n->frames - frames;
    done_line("net-rx", frames, bytes, lost, other);
    return 0;
}

static void run_net(const struct guest_params *p, int transmit)
{
    static struct net n;
    memset(&n, 0, sizeof n);
    n.frame = p->bench_frame ? (uint32_t)p->bench_frame : NET_DEFAULT_FRAME;
    if (p->bench_frame > NET_MAX_FRAME || n.frame < NET_MIN_FRAME) {
        report_fail(CHECK, "testguest.bench_frame=%lu: a frame is %u to %u bytes", p->bench_frame, NET_MIN_FRAME,
                    NET_MAX_FRAME);
        return;
    }
    uint64_t total = p->bench_mib << 20;
    n.frames = (total + n.frame - 1) / n.frame;
    if (net_start(&n, p) == 0) {
        if (transmit)
            net_tx(&n);
        else
            net_rx(&n);
        virtio_ack(&n.dev);
    }
    virtio_end(&n.dev);
}

/* ---- virtio-vsock ---- */

struct vs {
    struct virtio_dev dev;
    struct ring rx, tx;
    uint64_t cid;
    uint32_t payload;   /* bytes per packet (tx) or per rx buffer (rx) */
    uint32_t local_port, peer_port;
    uint32_t peer_buf_alloc, peer_fwd_cnt;
    uint32_t tx_cnt;    /* payload bytes sent */
    uint32_t fwd_cnt;   /* payload bytes received and consumed */
    uint32_t fwd_told;  /* fwd_cnt as last sent to the host */
    struct vsock_hdr in; /* the last received header */
    uint32_t in_len;
};

static int vs_start(struct vs *v, const struct guest_params *p)
{
    if (virtio_begin(&v->dev, device_index(p, VIRTIO_VSOCK), VIRTIO_ID_VSOCK, CHECK))
        return -1;
    if (virtio_activate_queues(&v->dev, 0, 3))
        return -1;
    v->cid = virtio_config_read64(&v->dev, 0);
    ring_init(&v->rx, &v->dev, VS_RXQ, rx_slots);
    ring_init(&v->tx, &v->dev, VS_TXQ, tx_slots);
    virtio_irq_route(&v->dev);
    for (int i = 0; i < SLOTS; i++)
        ring_post(&v->rx, i, VSOCK_HDR_SIZE + v->payload, 1);
    ring_kick(&v->rx);
    struct virtio_buf ev = { &event_buf, sizeof event_buf, 1 };
    if (virtio_post(&v->dev, VS_EVENTQ, &ev, 1) < 0) {
        report_fail(CHECK, "could not post the vsock event buffer");
        return -1;
    }
    return 0;
}

/* Posts one packet from guest port src to host port dst; RW carries `len`
 * bytes of whatever the slot holds.  ring_kick sends it. */
static int vs_post(struct vs *v, uint32_t src, uint32_t dst, uint16_t op, uint32_t flags, uint32_t len)
{
    int slot = tx_slot(&v->tx);
    if (slot < 0)
        return -1;
    struct vsock_hdr *h = (struct vsock_hdr *)tx_slots[slot];
    h->src_cid = v->cid;
    h->dst_cid = VSOCK_HOST_CID;
    h->src_port = src;
    h->dst_port = dst;
    h->len = len;
    h->type = VSOCK_TYPE_STREAM;
    h->op = op;
    h->flags = flags;
    h->buf_alloc = VS_BUF_ALLOC;
    h->fwd_cnt = v->fwd_cnt;
    ring_post(&v->tx, slot, VSOCK_HDR_SIZE + len, 0);
    return 0;
}

/* Sends one packet on our connection (which tells the host our fwd_cnt). */
static int vs_send(struct vs *v, uint16_t op, uint32_t flags, uint32_t len)
{
    v->fwd_told = v->fwd_cnt;
    if (vs_post(v, v->local_port, v->peer_port, op, flags, len))
        return -1;
    ring_kick(&v->tx);
    return 0;
}

/* Takes one received packet into v->in (its rx buffer is posted again):
 * 1, 0 when none is there, -1 after a FAIL line. */
static int vs_receive(struct vs *v)
{
    uint32_t len;
    int slot = ring_take(&v->rx, &len);
    if (slot == -2)
        return -1;
    if (slot < 0)
        return 0;
    v->in = *(const struct vsock_hdr *)rx_slots[slot];
    v->in_len = len;
    ring_post(&v->rx, slot, VSOCK_HDR_SIZE + v->payload, 1); /* wait_either notifies */
    if (len < VSOCK_HDR_SIZE || v->in.len != len - VSOCK_HDR_SIZE || v->in.src_cid != VSOCK_HOST_CID ||
        v->in.dst_cid != v->cid || v->in.type != VSOCK_TYPE_STREAM) {
        report_fail(CHECK, "rx packet: used length %u, len %u, cid %lu to %lu, type %u", len, v->in.len,
                    v->in.src_cid, v->in.dst_cid, v->in.type);
        return -1;
    }
    return 1;
}

/* The received packet belongs to our connection. */
static int vs_ours(const struct vs *v)
{
    return v->in.src_port == v->peer_port && v->in.dst_port == v->local_port;
}

/* Answers what is not ours as a socket would: RST for a REQUEST. */
static int vs_stray(struct vs *v)
{
    if (v->in.op != VSOCK_OP_REQUEST)
        return 0;
    if (vs_post(v, v->in.dst_port, v->in.src_port, VSOCK_OP_RST, 0, 0))
        return -1;
    ring_kick(&v->tx);
    return 0;
}

static void vs_take_credit(struct vs *v)
{
    v->peer_buf_alloc = v->in.buf_alloc;
    v->peer_fwd_cnt = v->in.fwd_cnt;
}

/* Waits (polling) for a packet of our connection with one of the ops in
 * `mask` (1 << op), answering and skipping the rest; 0 or -1 after FAIL. */
static int vs_wait_for(struct vs *v, unsigned mask, uint64_t timeout_us, const char *what)
{
    for (;;) {
        int got;
        while ((got = vs_receive(v)) == 1) {
            if (!vs_ours(v)) {
                if (vs_stray(v))
                    return -1;
                continue;
            }
            vs_take_credit(v);
            if (mask & (1u << v->in.op))
                return 0;
            if (v->in.op == VSOCK_OP_RST) {
                report_fail(CHECK, "%s: the connection was reset", what);
                return -1;
            }
            if (v->in.op == VSOCK_OP_CREDIT_REQUEST && vs_send(v, VSOCK_OP_CREDIT_UPDATE, 0, 0))
                return -1;
        }
        if (got < 0 || reclaim(&v->tx))
            return -1;
        if (wait_either(&v->rx, &v->tx, timeout_us)) {
            report_fail(CHECK, "%s: nothing from the device in %lu ms", what, timeout_us / 1000);
            return -1;
        }
    }
}

/* SHUTDOWN both ways, then the device's RST once it flushed everything. */
static int vs_close(struct vs *v, const char *what)
{
    if (vs_send(v, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RECV, 0))
        return -1;
    return vs_wait_for(v, 1u << VSOCK_OP_RST, IDLE_US, what);
}

static int vsock_tx(struct vs *v, uint64_t total)
{
    v->local_port = VS_GUEST_PORT;
    v->peer_port = NETBENCH_VSOCK_PORT;
    if (vs_send(v, VSOCK_OP_REQUEST, 0, 0))
        return -1;
    for (;;) {
        if (vs_wait_for(v, 1u << VSOCK_OP_RESPONSE | 1u << VSOCK_OP_RST, CONNECT_US, "vsock-tx connect"))
            return -1;
        if (v->in.op == VSOCK_OP_RESPONSE)
            break;
        report_fail(CHECK, "vsock-tx: RST for host port %u: nothing listens on <uds>_%u", NETBENCH_VSOCK_PORT,
                    NETBENCH_VSOCK_PORT);
        return -1;
    }
    kprintf("NETBENCH READY vsock-tx\n");
    uint64_t sent = 0, packets = 0;
    while (sent < total) {
        int got;
        while ((got = vs_receive(v)) == 1) {
            if (!vs_ours(v)) {
                if (vs_stray(v))
                    return -1;
                continue;
            }
            vs_take_credit(v);
            if (v->in.op == VSOCK_OP_RST || v->in.op == VSOCK_OP_SHUTDOWN) {
                report_fail(CHECK, "vsock-tx: the host ended the connection (op %u) after %lu bytes", v->in.op, sent);
                return -1;
            }
            if (v->in.op == VSOCK_OP_CREDIT_REQUEST && vs_send(v, VSOCK_OP_CREDIT_UPDATE, 0, 0))
                return -1;
        }
        if (got < 0 || reclaim(&v->tx))
            return -1;
        /* As much as the free descriptors and the host's credit allow, in
         * one notification. */
        uint32_t credit = 0;
        while (sent < total && free_slot(&v->tx) >= 0) {
            credit = v->peer_buf_alloc - (v->tx_cnt - v->peer_fwd_cnt);
            uint64_t n = v->payload;
            if (n > credit)
                n = credit;
            if (n > total - sent)
                n = total - sent;
            if (n == 0)
                break;
            v->fwd_told = v->fwd_cnt;
            if (vs_post(v, v->local_port, v->peer_port, VSOCK_OP_RW, 0, (uint32_t)n))
                return -1;
            v->tx_cnt += (uint32_t)n;
            sent += n;
            packets++;
        }
        ring_kick(&v->tx);
        if (sent < total && wait_either(&v->rx, &v->tx, IDLE_US)) {
            report_fail(CHECK, "vsock-tx: stalled after %lu bytes (credit %u of %u)", sent, credit, v->peer_buf_alloc);
            return -1;
        }
    }
    if (vs_close(v, "vsock-tx close"))
        return -1;
    done_line("vsock-tx", packets, sent, 0, 0);
    return 0;
}

static int vsock_rx(struct vs *v, uint64_t total)
{
    v->local_port = NETBENCH_VSOCK_PORT;
    /* Accept the first REQUEST for our port; refuse others. */
    for (;;) {
        int got;
        while ((got = vs_receive(v)) == 1) {
            if (v->in.op == VSOCK_OP_REQUEST && v->in.dst_port == NETBENCH_VSOCK_PORT)
                break;
            if (vs_stray(v))
                return -1;
        }
        if (got < 0)
            return -1;
        if (got == 1)
            break;
        if (wait_either(&v->rx, &v->tx, CONNECT_US)) {
            report_fail(CHECK, "vsock-rx: no connection to port %u in %lu ms", NETBENCH_VSOCK_PORT, CONNECT_US / 1000);
            return -1;
        }
    }
    v->peer_port = v->in.src_port;
    vs_take_credit(v);
    if (vs_send(v, VSOCK_OP_RESPONSE, 0, 0))
        return -1;
    kprintf("NETBENCH READY vsock-rx\n");
    uint64_t received = 0, packets = 0;
    for (;;) {
        if (vs_wait_for(v, 1u << VSOCK_OP_RW | 1u << VSOCK_OP_SHUTDOWN, IDLE_US, "vsock-rx"))
            return -1;
        if (v->in.op == VSOCK_OP_SHUTDOWN) {
            if (v->in.flags & VSOCK_SHUTDOWN_SEND)
                break;
            continue;
        }
        received += v->in.len;
        v->fwd_cnt += v->in.len;
        packets++;
        if (v->fwd_cnt - v->fwd_told >= VS_BUF_ALLOC / 2 && vs_send(v, VSOCK_OP_CREDIT_UPDATE, 0, 0))
            return -1;
    }
    if (vs_close(v, "vsock-rx close"))
        return -1;
    done_line("vsock-rx", packets, received, received < total ? total - received : 0, 0);
    return 0;
}

static void run_vsock(const struct guest_params *p, int transmit)
{
    static struct vs v;
    memset(&v, 0, sizeof v);
    v.payload = p->bench_frame ? (uint32_t)p->bench_frame : VS_DEFAULT_PAYLOAD;
    if (p->bench_frame > VS_MAX_PAYLOAD) {
        report_fail(CHECK, "testguest.bench_frame=%lu: a vsock packet carries 1 to %u bytes", p->bench_frame,
                    VS_MAX_PAYLOAD);
        return;
    }
    uint64_t total = p->bench_mib << 20;
    if (vs_start(&v, p) == 0) {
        if (transmit)
            vsock_tx(&v, total);
        else
            vsock_rx(&v, total);
        virtio_ack(&v.dev);
    }
    virtio_end(&v.dev);
}

void run_netbench(const struct guest_params *p)
{
    const char *kind = kind_names[p->net_bench];
    kprintf("NETBENCH %s %lu MiB, frame %lu\n", kind, p->bench_mib, p->bench_frame);
    switch (p->net_bench) {
    case NET_BENCH_NET_TX:
        run_net(p, 1);
        break;
    case NET_BENCH_NET_RX:
        run_net(p, 0);
        break;
    case NET_BENCH_VSOCK_TX:
        run_vsock(p, 1);
        break;
    case NET_BENCH_VSOCK_RX:
        run_vsock(p, 0);
        break;
    }
}
