/* The virtio-net<i> check (virtio 1.2, 5.1): the guest reads its MAC,
 * negotiates features, sends one Ethernet frame on the transmit queue and
 * waits for one frame from the host on the receive queue.
 *
 * testguest.net_offload=1 on the command line makes it accept the
 * checksum and segmentation offloads and mergeable receive buffers (small
 * buffers, one frame spread over several, num_buffers counted); without
 * it, none of them, and each receive chain holds a whole frame. */
#include "apic.h"
#include "kstring.h"
#include "print.h"
#include "report.h"
#include "virtio.h"
#include "zeropage.h"

/* Feature bits (5.1.3). */
#define NET_F_CSUM (1ull << 0)
#define NET_F_GUEST_CSUM (1ull << 1)
#define NET_F_MAC (1ull << 5)
#define NET_F_GUEST_TSO4 (1ull << 7)
#define NET_F_GUEST_TSO6 (1ull << 8)
#define NET_F_GUEST_UFO (1ull << 10)
#define NET_F_HOST_TSO4 (1ull << 11)
#define NET_F_HOST_TSO6 (1ull << 12)
#define NET_F_HOST_UFO (1ull << 14)
#define NET_F_MRG_RXBUF (1ull << 15)
#define RING_F_EVENT_IDX (1ull << 29)

#define NET_OFFLOADS (NET_F_CSUM | NET_F_GUEST_CSUM | NET_F_GUEST_TSO4 | NET_F_GUEST_TSO6 | NET_F_GUEST_UFO | \
                      NET_F_HOST_TSO4 | NET_F_HOST_TSO6 | NET_F_HOST_UFO)

#define RXQ 0
#define TXQ 1

/* struct virtio_net_hdr with num_buffers: 12 bytes with VERSION_1. */
#define NET_HDR_LEN 12
#define NET_HDR_NUM_BUFFERS 10
#define ETH_HLEN 14
#define ETHERTYPE_LOCAL 0x88b5 /* IEEE local experimental */

/* Receive buffers: without MRG_RXBUF, 3 chains of a header descriptor and
 * a data descriptor holding a whole 1514-byte frame between them (5.1.6.3.1
 * asks for 1526 bytes); with it, 6 one-descriptor chains of 512 bytes. */
#define RX_PLAIN_CHAINS 3
#define RX_PLAIN_DATA 1588
#define RX_MERGE_CHAINS 6
#define RX_MERGE_BYTES 512
#define RX_SLOTS 6
#define RX_SLOT_BYTES (NET_HDR_LEN + RX_PLAIN_DATA)

/* The host's frame: "SWIFTVM-NET-RX " and then byte i = (i * 7) & 0xff. */
#define RX_TAG "SWIFTVM-NET-RX "
#define RX_TAG_LEN 15
#define RX_PATTERN_LEN 1200
#define RX_WAIT_MS 5000
#define RX_POLL_US 100000
#define TX_WAIT_US 1000000

static uint8_t rx_slots[RX_SLOTS][RX_SLOT_BYTES] __attribute__((aligned(16)));
static uint8_t tx_header[NET_HDR_LEN] __attribute__((aligned(16)));
static uint8_t tx_frame[64] __attribute__((aligned(16)));
static uint8_t frame[2048]; /* one received frame, buffers joined */

struct net_state {
    int offload;
    int mergeable;
    int own_mac; /* the device offered no MAC; the guest chose one */
    uint8_t mac[6];
    int slot_of_head[VQ_SIZE];
    unsigned noise; /* frames from the host that were not the expected one */
};

/* testguest.net_offload=1 anywhere on the raw command line. */
static int offload_requested(void)
{
    static const char word[] = "testguest.net_offload=1";
    const char *line = zeropage_cmdline();
    if (!line)
        return 0;
    unsigned n = sizeof word - 1, len = (unsigned)strnlen(line, CMDLINE_MAX);
    for (unsigned i = 0; i + n <= len; i++) {
        if ((i == 0 || line[i - 1] == ' ') && strncmp(line + i, word, n) == 0 &&
            (line[i + n] == ' ' || line[i + n] == '\0'))
            return 1;
    }
    return 0;
}

static void format_mac(char *out, const uint8_t *mac)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 6; i++) {
        out[3 * i] = hex[mac[i] >> 4];
        out[3 * i + 1] = hex[mac[i] & 15];
        out[3 * i + 2] = i < 5 ? ':' : '\0';
    }
}

static int post_rx(struct virtio_dev *d, struct net_state *s, unsigned slot)
{
    int head;
    if (s->mergeable) {
        struct virtio_buf buf = { rx_slots[slot], RX_MERGE_BYTES, 1 };
        head = virtio_post(d, RXQ, &buf, 1);
    } else {
        struct virtio_buf bufs[2] = {
            { rx_slots[slot], NET_HDR_LEN, 1 },
            { rx_slots[slot] + NET_HDR_LEN, RX_PLAIN_DATA, 1 },
        };
        head = virtio_post(d, RXQ, bufs, 2);
    }
    if (head < 0 || head >= VQ_SIZE) {
        report_fail(d->name, "no free descriptors to post receive buffer %u", slot);
        return -1;
    }
    s->slot_of_head[head] = (int)slot;
    return 0;
}

static int send_frame(struct virtio_dev *d, struct net_state *s)
{
    memset(tx_header, 0, sizeof tx_header);
    memset(tx_frame, 0, sizeof tx_frame);
    memset(tx_frame, 0xff, 6); /* broadcast */
    memcpy(tx_frame + 6, s->mac, 6);
    tx_frame[12] = ETHERTYPE_LOCAL >> 8;
    tx_frame[13] = ETHERTYPE_LOCAL & 0xff;
    ksnprintf((char *)tx_frame + ETH_HLEN, sizeof tx_frame - ETH_HLEN, "SWIFTVM-NET-TX %u offload=%d", d->index,
              s->offload);
    /* Header and frame in two descriptors: the device gathers them. */
    struct virtio_buf bufs[2] = { { tx_header, NET_HDR_LEN, 0 }, { tx_frame, sizeof tx_frame, 0 } };
    if (virtio_post(d, TXQ, bufs, 2) < 0) {
        report_fail(d->name, "no free descriptors on the transmit queue");
        return -1;
    }
    uint32_t head, len;
    if (virtio_wait_used(d, TXQ, TX_WAIT_US, &head, &len)) {
        report_fail(d->name, "the transmitted frame was not used within %u ms", TX_WAIT_US / 1000);
        return -1;
    }
    if (len != 0) {
        report_fail(d->name, "transmit used length expected 0 (the device writes nothing), got %u", len);
        return -1;
    }
    return 0;
}

/* Takes one used receive chain; copies its bytes into frame at *have.
 * Returns the slot, or -1 after a FAIL line. */
static int take_rx(struct virtio_dev *d, struct net_state *s, uint32_t head, uint32_t len, unsigned *have)
{
    if (head >= VQ_SIZE || s->slot_of_head[head] < 0) {
        report_fail(d->name, "the device used receive chain %u, which was not posted", head);
        return -1;
    }
    int slot = s->slot_of_head[head];
    s->slot_of_head[head] = -1;
    uint32_t room = s->mergeable ? RX_MERGE_BYTES : RX_SLOT_BYTES;
    if (len > room || *have + len > sizeof frame) {
        report_fail(d->name, "receive used length %u is more than the %u-byte buffer", len, room);
        return -1;
    }
    memcpy(frame + *have, rx_slots[slot], len);
    *have += len;
    return slot;
}

static int is_expected(const struct net_state *s, unsigned have)
{
    const uint8_t *eth = frame + NET_HDR_LEN;
    if (have < NET_HDR_LEN + ETH_HLEN + RX_TAG_LEN)
        return 0;
    if (memcmp(eth, s->mac, 6) != 0 || eth[12] != (ETHERTYPE_LOCAL >> 8) || eth[13] != (ETHERTYPE_LOCAL & 0xff))
        return 0;
    return memcmp(eth + ETH_HLEN, RX_TAG, RX_TAG_LEN) == 0;
}

/* Waits for the host's frame; returns its num_buffers, or -1 after a FAIL. */
static int receive_frame(struct virtio_dev *d, struct net_state *s, unsigned *frame_len)
{
    for (unsigned waited = 0; waited < RX_WAIT_MS; waited += RX_POLL_US / 1000) {
        uint32_t head, len;
        if (virtio_wait_used(d, RXQ, RX_POLL_US, &head, &len))
            continue;
        unsigned have = 0;
        int slots[RX_SLOTS], nslots = 0;
        int slot = take_rx(d, s, head, len, &have);
        if (slot < 0)
            return -1;
        slots[nslots++] = slot;
        if (have < NET_HDR_LEN) {
            report_fail(d->name, "receive used length %u is less than the %u-byte header", have, NET_HDR_LEN);
            return -1;
        }
        unsigned buffers = (unsigned)frame[NET_HDR_NUM_BUFFERS] | (unsigned)frame[NET_HDR_NUM_BUFFERS + 1] << 8;
        if (!s->mergeable && buffers != 1) {
            report_fail(d->name, "num_buffers expected 1 without VIRTIO_NET_F_MRG_RXBUF, got %u", buffers);
            return -1;
        }
        if (buffers < 1 || buffers > RX_MERGE_CHAINS) {
            report_fail(d->name, "num_buffers %u is not between 1 and the %u posted buffers", buffers,
                        RX_MERGE_CHAINS);
            return -1;
        }
        for (unsigned i = 1; i < buffers; i++) {
            if (virtio_wait_used(d, RXQ, RX_POLL_US, &head, &len)) {
                report_fail(d->name, "num_buffers is %u but only %u buffers were used", buffers, i);
                return -1;
            }
            if ((slot = take_rx(d, s, head, len, &have)) < 0)
                return -1;
            slots[nslots++] = slot;
        }
        if (is_expected(s, have)) {
            *frame_len = have - NET_HDR_LEN;
            return (int)buffers;
        }
        /* Something else the host sent: give the buffers back and go on. */
        s->noise++;
        for (int i = 0; i < nslots; i++)
            if (post_rx(d, s, (unsigned)slots[i]))
                return -1;
    }
    char mac[18];
    format_mac(mac, s->mac);
    report_fail(d->name, "no frame tagged \"SWIFTVM-NET-RX\" for %s in %u ms (%u other frames)", mac, RX_WAIT_MS,
                s->noise);
    return -1;
}

static int check_payload(struct virtio_dev *d, unsigned frame_len)
{
    unsigned expected = ETH_HLEN + RX_TAG_LEN + RX_PATTERN_LEN;
    if (frame_len != expected) {
        report_fail(d->name, "received frame expected %u bytes, got %u", expected, frame_len);
        return -1;
    }
    const uint8_t *pattern = frame + NET_HDR_LEN + ETH_HLEN + RX_TAG_LEN;
    for (unsigned i = 0; i < RX_PATTERN_LEN; i++) {
        if (pattern[i] != (uint8_t)(i * 7)) {
            report_fail(d->name, "received payload byte %u expected 0x%x, got 0x%x", i, (uint8_t)(i * 7),
                        pattern[i]);
            return -1;
        }
    }
    return 0;
}

static int run(struct virtio_dev *d, struct net_state *s, char *detail, unsigned detail_size)
{
    uint64_t required = NET_F_MRG_RXBUF | NET_OFFLOADS | RING_F_EVENT_IDX;
    if ((d->offered & required) != required) {
        report_fail(d->name, "device features expected 0x%lx (MRG_RXBUF, offloads, EVENT_IDX), got 0x%lx",
                    required, d->offered);
        return -1;
    }
    /* The MAC field always exists (5.1.4); it is meaningful only with
     * VIRTIO_NET_F_MAC, and this device leaves it zero otherwise. */
    uint8_t config_mac[6];
    for (int i = 0; i < 6; i++)
        config_mac[i] = virtio_config_read8(d, (unsigned)i);
    s->own_mac = !(d->offered & NET_F_MAC);
    if (s->own_mac) {
        static const uint8_t zero[6], chosen[6] = { 0x06, 0x00, 0x5e, 0x57, 0x4d, 0x00 };
        if (memcmp(config_mac, zero, 6) != 0) {
            report_fail(d->name, "config space MAC expected zero without VIRTIO_NET_F_MAC, got %x:%x:%x:...",
                        config_mac[0], config_mac[1], config_mac[2]);
            return -1;
        }
        memcpy(s->mac, chosen, 6);
        s->mac[5] = (uint8_t)d->index;
    } else {
        memcpy(s->mac, config_mac, 6);
    }
    if (s->mac[0] & 1) {
        report_fail(d->name, "config space MAC has the multicast bit set (first byte 0x%x)", s->mac[0]);
        return -1;
    }
    uint64_t wanted = NET_F_MAC | RING_F_EVENT_IDX;
    if (s->offload)
        wanted |= NET_OFFLOADS | NET_F_MRG_RXBUF;
    if (virtio_activate_queues(d, wanted, 2))
        return -1;
    s->mergeable = s->offload;
    for (int i = 0; i < VQ_SIZE; i++)
        s->slot_of_head[i] = -1;
    unsigned chains = s->mergeable ? RX_MERGE_CHAINS : RX_PLAIN_CHAINS;
    for (unsigned i = 0; i < chains; i++)
        if (post_rx(d, s, i))
            return -1;
    if (send_frame(d, s))
        return -1;
    unsigned frame_len = 0;
    int buffers = receive_frame(d, s, &frame_len);
    if (buffers < 0 || check_payload(d, frame_len))
        return -1;
    virtio_ack(d);
    char mac[18];
    format_mac(mac, s->mac);
    ksnprintf(detail, detail_size,
              "mac %s (%s), offloads %s, tx 1 frame, rx %u bytes in %d buffer%s (num_buffers %d), %u other frames",
              mac, s->own_mac ? "guest's own" : "from the device", s->offload ? "on" : "off", frame_len, buffers, buffers == 1 ? "" : "s", buffers, s->noise);
    return 0;
}

void check_virtio_net(unsigned index)
{
    char name[24], detail[160];
    struct virtio_dev d;
    struct net_state s;
    memset(&s, 0, sizeof s);
    s.offload = offload_requested();
    ksnprintf(name, sizeof name, "virtio-net%u", index);
    if (virtio_begin(&d, index, VIRTIO_ID_NET, name))
        return;
    int failed = run(&d, &s, detail, sizeof detail);
    virtio_end(&d);
    if (!failed)
        report_pass(name, "%s", detail);
}
