/* The virtio-vsock<i> check (virtio 1.2, 5.10): rx (queue 0), tx (1) and
 * event (2) queues, packets with a 44-byte header.  The guest, in turn:
 *
 *  1. listens on port 5000: answers REQUESTs to it with RESPONSE and
 *     echoes what the host program sends after "CONNECT 5000", until the
 *     host shuts down its sending side; then SHUTDOWN both ways, and the
 *     device's RST ends the connection.  REQUESTs to other ports get RST
 *     (nothing listens there), as Linux answers them;
 *  2. connects to host port 6000 (the Unix socket <uds>_6000), sends
 *     "SWIFTVM-VSOCK-OUT", reads the host listener's "SWIFTVM-VSOCK-BACK"
 *     up to its end-of-stream, and shuts down;
 *  3. sends data for a connection that does not exist and expects RST.
 *
 * Completions are polled; every wait is bounded by LAPIC wall time. */
#include "virtio_vsock.h"
#include "apic.h"
#include "kstring.h"
#include "print.h"
#include "report.h"
#include "virtio.h"
#include "zeropage.h"

_Static_assert(sizeof(struct vsock_hdr) == VSOCK_HDR_SIZE, "the vsock header is 44 bytes");

#define Q_RX 0
#define Q_TX 1
#define Q_EVENT 2

#define RX_BUFS 4
#define RX_DATA 2048
#define GUEST_BUF_ALLOC 65536u
#define TX_WAIT_US 500000

/* Wall-time budgets per phase. */
#define LISTEN_BUDGET_US 8000000ull
#define CONNECT_BUDGET_US 4000000ull
#define UNKNOWN_BUDGET_US 2000000ull

#define GUEST_OUT_PORT 49152
#define UNKNOWN_GUEST_PORT 7777
#define UNKNOWN_HOST_PORT 7778

struct packet {
    struct vsock_hdr hdr;
    uint8_t data[RX_DATA];
};

static struct packet rx_bufs[RX_BUFS] __attribute__((aligned(16)));
static int rx_buf_of_head[VQ_SIZE];
static struct packet tx_buf __attribute__((aligned(16)));
static uint32_t event_buf __attribute__((aligned(16)));

struct vsock {
    struct virtio_dev dev;
    uint64_t cid;
    uint64_t spent_us; /* wall time of the current phase */
    char what[96];     /* why the last wait failed */
};

/* One received packet, copied out of its rx buffer. */
static struct packet in;

static int post_rx(struct vsock *v, int i)
{
    struct virtio_buf buf = { &rx_bufs[i], sizeof rx_bufs[i], 1 };
    int head = virtio_post(&v->dev, Q_RX, &buf, 1);
    if (head < 0)
        return -1;
    rx_buf_of_head[head] = i;
    return 0;
}

/* testguest.vsock_cid=N from the command line; 0 when absent. */
static uint64_t expected_cid(void)
{
    static const char key[] = "testguest.vsock_cid=";
    const char *line = zeropage_cmdline();
    if (!line)
        return 0;
    for (const char *p = line; *p; p++) {
        if (p != line && p[-1] != ' ')
            continue;
        if (strncmp(p, key, sizeof key - 1) != 0)
            continue;
        uint64_t v = 0;
        for (p += sizeof key - 1; *p >= '0' && *p <= '9'; p++)
            v = v * 10 + (uint64_t)(*p - '0');
        return v;
    }
    return 0;
}

/* Sends one packet from guest port src to host port dst; waits until the
 * device took it.  Returns 0 or -1. */
static int send_packet(struct vsock *v, uint16_t op, uint32_t src, uint32_t dst, uint32_t flags, uint32_t fwd_cnt,
                       const void *data, uint32_t len)
{
    if (len > RX_DATA)
        len = RX_DATA;
    memset(&tx_buf.hdr, 0, sizeof tx_buf.hdr);
    tx_buf.hdr.src_cid = v->cid;
    tx_buf.hdr.dst_cid = VSOCK_HOST_CID;
    tx_buf.hdr.src_port = src;
    tx_buf.hdr.dst_port = dst;
    tx_buf.hdr.len = len;
    tx_buf.hdr.type = VSOCK_TYPE_STREAM;
    tx_buf.hdr.op = op;
    tx_buf.hdr.flags = flags;
    tx_buf.hdr.buf_alloc = GUEST_BUF_ALLOC;
    tx_buf.hdr.fwd_cnt = fwd_cnt;
    if (len)
        memcpy(tx_buf.data, data, len);
    struct virtio_buf buf = { &tx_buf, VSOCK_HDR_SIZE + len, 0 };
    if (virtio_post(&v->dev, Q_TX, &buf, 1) < 0) {
        ksnprintf(v->what, sizeof v->what, "no free tx descriptor");
        return -1;
    }
    uint32_t head, used;
    int failed = virtio_wait_used(&v->dev, Q_TX, TX_WAIT_US, &head, &used);
    v->spent_us += lapic_elapsed_us();
    if (failed) {
        ksnprintf(v->what, sizeof v->what, "the device did not take a tx packet (op %u) within %u ms", op,
                  TX_WAIT_US / 1000);
        return -1;
    }
    return 0;
}

/* Waits for the next packet, at most until the phase's budget is spent.
 * Returns 0 with the packet in `in`, or -1 on timeout or a bad packet. */
static int receive(struct vsock *v, uint64_t budget_us)
{
    if (v->spent_us >= budget_us) {
        ksnprintf(v->what, sizeof v->what, "no packet within %lu ms", budget_us / 1000);
        return -1;
    }
    uint32_t head, len;
    int failed = virtio_wait_used(&v->dev, Q_RX, budget_us - v->spent_us, &head, &len);
    v->spent_us += lapic_elapsed_us();
    if (failed) {
        ksnprintf(v->what, sizeof v->what, "no packet within %lu ms", budget_us / 1000);
        return -1;
    }
    if (head >= VQ_SIZE) {
        ksnprintf(v->what, sizeof v->what, "used rx element names descriptor %u", head);
        return -1;
    }
    int i = rx_buf_of_head[head];
    memcpy(&in, &rx_bufs[i], sizeof in);
    if (post_rx(v, i)) {
        ksnprintf(v->what, sizeof v->what, "could not post rx buffer %d again", i);
        return -1;
    }
    if (len < VSOCK_HDR_SIZE || in.hdr.len != len - VSOCK_HDR_SIZE || in.hdr.len > RX_DATA) {
        ksnprintf(v->what, sizeof v->what, "rx packet of %u bytes has len %u", len, in.hdr.len);
        return -1;
    }
    if (in.hdr.src_cid != VSOCK_HOST_CID || in.hdr.dst_cid != v->cid || in.hdr.type != VSOCK_TYPE_STREAM) {
        ksnprintf(v->what, sizeof v->what, "rx packet from cid %lu to cid %lu type %u, expected 2 to %lu type 1",
                  in.hdr.src_cid, in.hdr.dst_cid, in.hdr.type, v->cid);
        return -1;
    }
    return 0;
}

/* Answers what any socket answers, whatever the phase: a REQUEST to a
 * port nobody listens on gets RST, a CREDIT_REQUEST gets our credit. */
static int answer_stray(struct vsock *v)
{
    if (in.hdr.op == VSOCK_OP_REQUEST)
        return send_packet(v, VSOCK_OP_RST, in.hdr.dst_port, in.hdr.src_port, 0, 0, 0, 0);
    if (in.hdr.op == VSOCK_OP_CREDIT_REQUEST)
        return send_packet(v, VSOCK_OP_CREDIT_UPDATE, in.hdr.dst_port, in.hdr.src_port, 0, 0, 0, 0);
    return 0;
}

/* Phase 1: the host program connects to guest port 5000 and the guest
 * echoes its bytes until it shuts down.  *echoed and *refused count the
 * bytes echoed and the REQUESTs for other ports. */
static int listen_and_echo(struct vsock *v, uint32_t *echoed, unsigned *refused)
{
    int connected = 0, closing = 0;
    uint32_t host_port = 0, fwd_cnt = 0;
    *echoed = 0;
    *refused = 0;
    v->spent_us = 0;
    for (;;) {
        if (receive(v, LISTEN_BUDGET_US)) {
            report_fail(v->dev.name, "listening on port %u: %s (connected %d, echoed %u bytes)", VSOCK_ECHO_PORT,
                        v->what, connected, *echoed);
            return -1;
        }
        int ours = connected && in.hdr.src_port == host_port && in.hdr.dst_port == VSOCK_ECHO_PORT;
        if (!connected && in.hdr.op == VSOCK_OP_REQUEST && in.hdr.dst_port == VSOCK_ECHO_PORT) {
            host_port = in.hdr.src_port;
            connected = 1;
            if (send_packet(v, VSOCK_OP_RESPONSE, VSOCK_ECHO_PORT, host_port, 0, 0, 0, 0))
                goto tx_failed;
            continue;
        }
        if (!ours) {
            if (in.hdr.op == VSOCK_OP_REQUEST)
                (*refused)++;
            if (answer_stray(v))
                goto tx_failed;
            continue;
        }
        switch (in.hdr.op) {
        case VSOCK_OP_RW:
            fwd_cnt += in.hdr.len;
            if (send_packet(v, VSOCK_OP_RW, VSOCK_ECHO_PORT, host_port, 0, fwd_cnt, in.data, in.hdr.len))
                goto tx_failed;
            *echoed += in.hdr.len;
            break;
        case VSOCK_OP_SHUTDOWN:
            if (!(in.hdr.flags & VSOCK_SHUTDOWN_SEND))
                break;
            /* The host sends no more: we are done too. */
            if (send_packet(v, VSOCK_OP_SHUTDOWN, VSOCK_ECHO_PORT, host_port,
                            VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RECV, fwd_cnt, 0, 0))
                goto tx_failed;
            closing = 1;
            break;
        case VSOCK_OP_RST:
            if (!closing) {
                report_fail(v->dev.name, "port %u: the device reset the connection after %u echoed bytes, "
                            "before the host shut down", VSOCK_ECHO_PORT, *echoed);
                return -1;
            }
            return 0;
        case VSOCK_OP_CREDIT_REQUEST:
            if (send_packet(v, VSOCK_OP_CREDIT_UPDATE, VSOCK_ECHO_PORT, host_port, 0, fwd_cnt, 0, 0))
                goto tx_failed;
            break;
        case VSOCK_OP_CREDIT_UPDATE:
            break;
        default:
            report_fail(v->dev.name, "port %u: unexpected op %u from the device", VSOCK_ECHO_PORT, in.hdr.op);
            return -1;
        }
    }
tx_failed:
    report_fail(v->dev.name, "listening on port %u: %s", VSOCK_ECHO_PORT, v->what);
    return -1;
}

/* Phase 2: connect to host port 6000, send our text, read the reply to
 * its end, close. */
static int connect_out(struct vsock *v, uint32_t *reply_len)
{
    static const char out[] = VSOCK_OUT_TEXT, back[] = VSOCK_BACK_TEXT;
    static char reply[64];
    uint32_t got = 0, fwd_cnt = 0;
    int established = 0, closing = 0;
    v->spent_us = 0;
    if (send_packet(v, VSOCK_OP_REQUEST, GUEST_OUT_PORT, VSOCK_HOST_PORT, 0, 0, 0, 0))
        goto tx_failed;
    for (;;) {
        if (receive(v, CONNECT_BUDGET_US)) {
            report_fail(v->dev.name, "connecting to host port %u: %s (established %d, %u reply bytes)", VSOCK_HOST_PORT,
                        v->what, established, got);
            return -1;
        }
        if (in.hdr.src_port != VSOCK_HOST_PORT || in.hdr.dst_port != GUEST_OUT_PORT) {
            if (answer_stray(v))
                goto tx_failed;
            continue;
        }
        switch (in.hdr.op) {
        case VSOCK_OP_RESPONSE:
            if (established) {
                report_fail(v->dev.name, "host port %u: a second RESPONSE", VSOCK_HOST_PORT);
                return -1;
            }
            established = 1;
            if (send_packet(v, VSOCK_OP_RW, GUEST_OUT_PORT, VSOCK_HOST_PORT, 0, 0, out, sizeof out - 1))
                goto tx_failed;
            break;
        case VSOCK_OP_RST:
            if (!established) {
                report_fail(v->dev.name, "host port %u: the device answered RST: nothing listens on the host's "
                            "<uds>_%u socket", VSOCK_HOST_PORT, VSOCK_HOST_PORT);
                return -1;
            }
            if (!closing) {
                report_fail(v->dev.name, "host port %u: reset after %u reply bytes, before the host's end of stream",
                            VSOCK_HOST_PORT, got);
                return -1;
            }
            goto done;
        case VSOCK_OP_RW:
            if (!established) {
                report_fail(v->dev.name, "host port %u: data before RESPONSE", VSOCK_HOST_PORT);
                return -1;
            }
            for (uint32_t i = 0; i < in.hdr.len && got < sizeof reply - 1; i++)
                reply[got++] = (char)in.data[i];
            fwd_cnt += in.hdr.len;
            break;
        case VSOCK_OP_SHUTDOWN:
            if (!(in.hdr.flags & VSOCK_SHUTDOWN_SEND))
                break;
            if (send_packet(v, VSOCK_OP_SHUTDOWN, GUEST_OUT_PORT, VSOCK_HOST_PORT,
                            VSOCK_SHUTDOWN_SEND | VSOCK_SHUTDOWN_RECV, fwd_cnt, 0, 0))
                goto tx_failed;
            closing = 1;
            break;
        case VSOCK_OP_CREDIT_REQUEST:
            if (send_packet(v, VSOCK_OP_CREDIT_UPDATE, GUEST_OUT_PORT, VSOCK_HOST_PORT, 0, fwd_cnt, 0, 0))
                goto tx_failed;
            break;
        case VSOCK_OP_CREDIT_UPDATE:
            break;
        default:
            report_fail(v->dev.name, "host port %u: unexpected op %u from the device", VSOCK_HOST_PORT, in.hdr.op);
            return -1;
        }
    }
done:
    reply[got] = 0;
    *reply_len = got;
    if (got != sizeof back - 1 || memcmp(reply, back, got) != 0) {
        report_fail(v->dev.name, "host port %u: expected the reply \"%s\", got %u bytes \"%s\"", VSOCK_HOST_PORT, back,
                    got, reply);
        return -1;
    }
    return 0;
tx_failed:
    report_fail(v->dev.name, "connecting to host port %u: %s", VSOCK_HOST_PORT, v->what);
    return -1;
}

/* Phase 3: data for a connection that does not exist must be reset. */
static int unknown_connection(struct vsock *v)
{
    static const char junk[] = "junk";
    v->spent_us = 0;
    if (send_packet(v, VSOCK_OP_RW, UNKNOWN_GUEST_PORT, UNKNOWN_HOST_PORT, 0, 0, junk, sizeof junk - 1)) {
        report_fail(v->dev.name, "unknown connection: %s", v->what);
        return -1;
    }
    for (;;) {
        if (receive(v, UNKNOWN_BUDGET_US)) {
            report_fail(v->dev.name, "data for no connection (guest port %u to host port %u): expected RST, %s",
                        UNKNOWN_GUEST_PORT, UNKNOWN_HOST_PORT, v->what);
            return -1;
        }
        if (in.hdr.src_port == UNKNOWN_HOST_PORT && in.hdr.dst_port == UNKNOWN_GUEST_PORT) {
            if (in.hdr.op == VSOCK_OP_RST)
                return 0;
            report_fail(v->dev.name, "data for no connection: expected RST, got op %u", in.hdr.op);
            return -1;
        }
        if (answer_stray(v)) {
            report_fail(v->dev.name, "unknown connection: %s", v->what);
            return -1;
        }
    }
}

static int run(struct vsock *v)
{
    if (virtio_activate_queues(&v->dev, 0, 3))
        return -1;
    v->cid = virtio_config_read64(&v->dev, 0);
    uint64_t want = expected_cid();
    if (v->cid < 3 || v->cid > 0xfffffffeull || (want && v->cid != want)) {
        report_fail(v->dev.name, "guest_cid (config offset 0) expected %lu, reads %lu", want ? want : 3, v->cid);
        return -1;
    }
    for (int i = 0; i < RX_BUFS; i++) {
        if (post_rx(v, i)) {
            report_fail(v->dev.name, "could not post rx buffer %d", i);
            return -1;
        }
    }
    struct virtio_buf ev = { &event_buf, sizeof event_buf, 1 };
    if (virtio_post(&v->dev, Q_EVENT, &ev, 1) < 0) {
        report_fail(v->dev.name, "could not post the event buffer");
        return -1;
    }

    uint32_t echoed, reply_len;
    unsigned refused;
    if (listen_and_echo(v, &echoed, &refused) || connect_out(v, &reply_len) || unknown_connection(v))
        return -1;
    virtio_ack(&v->dev);
    report_pass(v->dev.name, "cid %lu, port %u echoed %u bytes, %u request(s) for other ports refused, "
                "host port %u replied %u bytes, unknown connection reset", v->cid, VSOCK_ECHO_PORT, echoed, refused,
                VSOCK_HOST_PORT, reply_len);
    return 0;
}

void check_virtio_vsock(unsigned index)
{
    static char name[24];
    static struct vsock v;
    memset(&v, 0, sizeof v);
    ksnprintf(name, sizeof name, "virtio-vsock%u", index);
    if (virtio_begin(&v.dev, index, VIRTIO_ID_VSOCK, name))
        return;
    run(&v);
    virtio_end(&v.dev);
}
