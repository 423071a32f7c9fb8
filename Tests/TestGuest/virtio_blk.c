/* The virtio-blk<i> check (virtio 1.2, 5.2) against an image the host
 * prepared: byte j of sector k is (k * 7 + j) & 0xff for sectors 0..15. */
#include "kstring.h"
#include "print.h"
#include "report.h"
#include "virtio.h"

#define SECTOR 512
#define PATTERN_SECTORS 16
#define READ_FIRST 0 /* sectors 0..3 in one request */
#define WRITE_FIRST 8 /* sectors 8..11 written by rw and wb */
#define RW_SECTORS 4
#define ID_BYTES 20

/* Feature bits (5.2.3). */
#define VIRTIO_BLK_F_RO (1ull << 5)
#define VIRTIO_BLK_F_FLUSH (1ull << 9)

/* Configuration space: capacity in 512-byte sectors. */
#define BLK_CONFIG_CAPACITY 0x00

/* Request types and status values (5.2.6). */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define STATUS_UNWRITTEN 0xff

struct blk_header {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

static struct blk_header header __attribute__((aligned(16)));
static uint8_t data[RW_SECTORS * SECTOR] __attribute__((aligned(16)));
static uint8_t expected[RW_SECTORS * SECTOR];
static volatile uint8_t status_byte;

static uint8_t read_pattern(uint64_t sector, unsigned j) { return (uint8_t)((sector * 7 + j) & 0xff); }
static uint8_t write_pattern(uint64_t sector, unsigned j) { return (uint8_t)(((sector ^ 0x5a) + j * 3) & 0xff); }

static const char *type_name(uint32_t type)
{
    switch (type) {
    case VIRTIO_BLK_T_IN: return "read";
    case VIRTIO_BLK_T_OUT: return "write";
    case VIRTIO_BLK_T_FLUSH: return "flush";
    case VIRTIO_BLK_T_GET_ID: return "get-id";
    default: return "request";
    }
}

/* One request: header, optional data buffer, status byte.  Returns the
 * status the device wrote (STATUS_UNWRITTEN if none), or -1 after a FAIL
 * line when the transfer itself went wrong. */
static int request(struct virtio_dev *d, uint32_t type, uint64_t sector, void *buf, uint32_t len, int use_irq,
                   const char *what)
{
    struct virtio_buf bufs[3];
    unsigned n = 0;
    header.type = type;
    header.reserved = 0;
    header.sector = sector;
    status_byte = STATUS_UNWRITTEN;
    bufs[n++] = (struct virtio_buf){ &header, sizeof header, 0 };
    if (len)
        bufs[n++] = (struct virtio_buf){ buf, len, type != VIRTIO_BLK_T_OUT };
    bufs[n++] = (struct virtio_buf){ (void *)&status_byte, 1, 1 };
    uint32_t used_len;
    if (virtio_transfer(d, bufs, n, use_irq, what, &used_len))
        return -1;
    return status_byte;
}

/* Issues a request that must end with the given status. */
static int expect_status(struct virtio_dev *d, uint32_t type, uint64_t sector, void *buf, uint32_t len,
                         int use_irq, int want)
{
    char what[48];
    ksnprintf(what, sizeof what, "%s of sector %lu", type_name(type), sector);
    if (type == VIRTIO_BLK_T_FLUSH || type == VIRTIO_BLK_T_GET_ID)
        ksnprintf(what, sizeof what, "%s", type_name(type));
    int st = request(d, type, sector, buf, len, use_irq, what);
    if (st < 0)
        return -1;
    if (st != want) {
        report_fail(d->name, "%s: status expected %u, got %u%s", what, want, st,
                    st == STATUS_UNWRITTEN ? " (never written)" : "");
        return -1;
    }
    return 0;
}

/* Compares the data buffer with expected; names the first difference. */
static int compare(struct virtio_dev *d, uint64_t first_sector, unsigned sectors, const char *what)
{
    for (unsigned i = 0; i < sectors * SECTOR; i++) {
        if (data[i] != expected[i]) {
            report_fail(d->name, "%s: sector %lu byte %u expected 0x%x, got 0x%x", what,
                        first_sector + i / SECTOR, i % SECTOR, expected[i], data[i]);
            return -1;
        }
    }
    return 0;
}

static void fill_expected(uint64_t first, unsigned sectors, uint8_t (*pattern)(uint64_t, unsigned))
{
    for (unsigned s = 0; s < sectors; s++)
        for (unsigned j = 0; j < SECTOR; j++)
            expected[s * SECTOR + j] = pattern(first + s, j);
}

static int read_and_compare(struct virtio_dev *d, uint64_t first, unsigned sectors, int use_irq,
                            uint8_t (*pattern)(uint64_t, unsigned), const char *what)
{
    memset(data, 0, sizeof data);
    fill_expected(first, sectors, pattern);
    if (expect_status(d, VIRTIO_BLK_T_IN, first, data, sectors * SECTOR, use_irq, VIRTIO_BLK_S_OK))
        return -1;
    return compare(d, first, sectors, what);
}

/* The id as printable text: at most 20 bytes, NUL-terminated if shorter. */
static void id_text(char *out, const uint8_t *id)
{
    unsigned n = 0;
    while (n < ID_BYTES && id[n]) {
        out[n] = id[n] >= 0x20 && id[n] < 0x7f ? (char)id[n] : '?';
        n++;
    }
    out[n] = 0;
}

static int check_features(struct virtio_dev *d, enum virtio_kind kind)
{
    int ro = (d->offered & VIRTIO_BLK_F_RO) != 0, flush = (d->offered & VIRTIO_BLK_F_FLUSH) != 0;
    if (kind == VIRTIO_BLK_RO && !ro) {
        report_fail(d->name, "read-only drive: features expected VIRTIO_BLK_F_RO (bit 5), got 0x%lx", d->offered);
        return -1;
    }
    if (kind != VIRTIO_BLK_RO && ro) {
        report_fail(d->name, "read-write drive: features expected no VIRTIO_BLK_F_RO (bit 5), got 0x%lx",
                    d->offered);
        return -1;
    }
    if (kind == VIRTIO_BLK_WB && !flush) {
        report_fail(d->name, "writeback drive: features expected VIRTIO_BLK_F_FLUSH (bit 9), got 0x%lx",
                    d->offered);
        return -1;
    }
    if (kind == VIRTIO_BLK_RW && flush) {
        report_fail(d->name, "drive without writeback: features expected no VIRTIO_BLK_F_FLUSH (bit 9), got 0x%lx",
                    d->offered);
        return -1;
    }
    return 0;
}

/* Writes sectors 8..11 with the write pattern and reads them back. */
static int write_and_verify(struct virtio_dev *d)
{
    fill_expected(WRITE_FIRST, RW_SECTORS, write_pattern);
    memcpy(data, expected, sizeof data);
    if (expect_status(d, VIRTIO_BLK_T_OUT, WRITE_FIRST, data, sizeof data, 0, VIRTIO_BLK_S_OK))
        return -1;
    return read_and_compare(d, WRITE_FIRST, RW_SECTORS, 0, write_pattern, "read back after write");
}

/* A write must be refused and leave the sector as it was. */
static int write_refused(struct virtio_dev *d)
{
    memset(data, 0xee, SECTOR);
    if (expect_status(d, VIRTIO_BLK_T_OUT, WRITE_FIRST, data, SECTOR, 0, VIRTIO_BLK_S_IOERR))
        return -1;
    return read_and_compare(d, WRITE_FIRST, 1, 0, read_pattern, "read after refused write");
}

static int run(struct virtio_dev *d, enum virtio_kind kind, char *id, uint64_t *capacity)
{
    if (check_features(d, kind))
        return -1;
    uint64_t wanted = kind == VIRTIO_BLK_WB ? VIRTIO_BLK_F_FLUSH : kind == VIRTIO_BLK_RO ? VIRTIO_BLK_F_RO : 0;
    if (virtio_activate(d, wanted))
        return -1;

    *capacity = virtio_config_read64(d, BLK_CONFIG_CAPACITY);
    if (*capacity < PATTERN_SECTORS) {
        report_fail(d->name, "capacity expected at least %u sectors (the host's pattern), got %lu",
                    PATTERN_SECTORS, *capacity);
        return -1;
    }

    /* The first request completes by interrupt, the rest by polling. */
    virtio_irq_route(d);
    if (read_and_compare(d, READ_FIRST, RW_SECTORS, 1, read_pattern, "read of sectors 0..3"))
        return -1;

    uint8_t raw_id[ID_BYTES + 1];
    memset(raw_id, 0, sizeof raw_id);
    if (expect_status(d, VIRTIO_BLK_T_GET_ID, 0, raw_id, ID_BYTES, 0, VIRTIO_BLK_S_OK))
        return -1;
    id_text(id, raw_id);

    if (kind == VIRTIO_BLK_RO) {
        if (write_refused(d))
            return -1;
    } else {
        if (write_and_verify(d))
            return -1;
        if (kind == VIRTIO_BLK_WB && expect_status(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, VIRTIO_BLK_S_OK))
            return -1;
    }

    memset(data, 0, SECTOR);
    return expect_status(d, VIRTIO_BLK_T_IN, *capacity, data, SECTOR, 0, VIRTIO_BLK_S_IOERR);
}

void check_virtio_blk(unsigned index, enum virtio_kind kind)
{
    char name[24], id[ID_BYTES + 1];
    struct virtio_dev d;
    uint64_t capacity = 0;
    ksnprintf(name, sizeof name, "virtio-blk%u", index);
    if (virtio_begin(&d, index, VIRTIO_ID_BLOCK, name))
        return;
    int failed = run(&d, kind, id, &capacity);
    virtio_end(&d);
    if (failed)
        return;
    const char *what = kind == VIRTIO_BLK_RO   ? "read ok, write refused (read-only)"
                       : kind == VIRTIO_BLK_WB ? "read+write+flush ok"
                                               : "read+write ok";
    report_pass(name, "id %s, %lu sectors, %s, past-end read refused, irq %u", id[0] ? id : "(empty)", capacity,
                what, d.gsi);
}
