#include "cmdline.h"
#include "kstring.h"

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n'; }

/* If the word [w, w+len) starts with key, returns the value after it. */
static const char *value_of(const char *w, uint64_t len, const char *key, uint64_t *vlen)
{
    uint64_t klen = strnlen(key, 64);
    if (len < klen || strncmp(w, key, klen) != 0)
        return 0;
    *vlen = len - klen;
    return w + klen;
}

static int word_is(const char *w, uint64_t len, const char *s)
{
    return strnlen(s, 64) == len && strncmp(w, s, len) == 0;
}

/* Decimal only; returns 0 on an empty or non-numeric value. */
static int parse_u64(const char *s, uint64_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0)
        return 0;
    for (uint64_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 1;
}

static void parse_mode(const char *v, uint64_t len, struct guest_params *p)
{
    static const struct { const char *name; enum guest_mode mode; } modes[] = {
        { "selftest", MODE_SELFTEST },
        { "echo", MODE_ECHO },
        { "triplefault", MODE_TRIPLEFAULT },
        { "spin", MODE_SPIN },
        { "reset", MODE_RESET },
        { "blkbench", MODE_BLKBENCH },
        { "silent", MODE_SILENT },
        { "insn", MODE_INSN },
        { "flood", MODE_FLOOD },
        { "ticker", MODE_TICKER },
        { "keyboard", MODE_KEYBOARD },
        { "netbench", MODE_NETBENCH },
        { "hostile", MODE_HOSTILE },
    };
    for (unsigned i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        if (word_is(v, len, modes[i].name)) {
            p->mode = modes[i].mode;
            p->mode_name = modes[i].name;
        }
    }
}

static void parse_acpi(const char *v, uint64_t len, struct guest_params *p)
{
    if (word_is(v, len, "1"))
        p->acpi = ACPI_ON;
    else if (word_is(v, len, "0"))
        p->acpi = ACPI_OFF;
}

/* A comma-separated list such as "rw,ro,rng".  An unknown name still
 * takes a slot, so later devices keep their MMIO address and GSI. */
static void parse_virtio(const char *v, uint64_t len, struct guest_params *p)
{
    static const struct { const char *name; enum virtio_kind kind; } kinds[] = {
        { "rw", VIRTIO_BLK_RW },
        { "ro", VIRTIO_BLK_RO },
        { "wb", VIRTIO_BLK_WB },
        { "rng", VIRTIO_RNG },
        { "net", VIRTIO_NET },
        { "vsock", VIRTIO_VSOCK },
        { "balloon", VIRTIO_BALLOON },
    };
    p->has_virtio = 1;
    uint64_t i = 0;
    while (i < len) {
        uint64_t start = i;
        while (i < len && v[i] != ',')
            i++;
        if (i > start) {
            enum virtio_kind kind = VIRTIO_UNKNOWN;
            for (unsigned k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
                if (word_is(v + start, i - start, kinds[k].name))
                    kind = kinds[k].kind;
            if (p->virtio_count < VIRTIO_MAX_DEVICES)
                p->virtio[p->virtio_count++] = kind;
            else
                p->virtio_overflow = 1;
        }
        i++; /* skip the comma */
    }
}

static void parse_finish(const char *v, uint64_t len, struct guest_params *p)
{
    if (word_is(v, len, "reset"))
        p->finish = FINISH_RESET;
    else if (word_is(v, len, "poweroff"))
        p->finish = FINISH_POWEROFF;
    else if (word_is(v, len, "hold"))
        p->finish = FINISH_HOLD;
}

static void parse_bench(const char *v, uint64_t len, struct guest_params *p)
{
    static const struct { const char *name; enum bench_kind kind; } kinds[] = {
        { "seqread", BENCH_SEQREAD },
        { "randread", BENCH_RANDREAD },
        { "seqwrite", BENCH_SEQWRITE },
        { "randwrite", BENCH_RANDWRITE },
    };
    static const struct { const char *name; enum net_bench_kind kind; } net_kinds[] = {
        { "net-tx", NET_BENCH_NET_TX },
        { "net-rx", NET_BENCH_NET_RX },
        { "vsock-tx", NET_BENCH_VSOCK_TX },
        { "vsock-rx", NET_BENCH_VSOCK_RX },
    };
    for (unsigned i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (word_is(v, len, kinds[i].name))
            p->bench = kinds[i].kind;
    for (unsigned i = 0; i < sizeof net_kinds / sizeof net_kinds[0]; i++)
        if (word_is(v, len, net_kinds[i].name))
            p->net_bench = net_kinds[i].kind;
}

static void parse_hostile(const char *v, uint64_t len, struct guest_params *p)
{
    static const struct { const char *name; enum hostile_kind kind; } kinds[] = {
        { "notify", HOSTILE_NOTIFY },
        { "requeue", HOSTILE_REQUEUE },
        { "deaf", HOSTILE_DEAF },
        { "chatter", HOSTILE_CHATTER },
    };
    for (unsigned i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (word_is(v, len, kinds[i].name))
            p->hostile = kinds[i].kind;
}

static void parse_word(const char *w, uint64_t len, struct guest_params *p)
{
    const char *v;
    uint64_t vlen;
    if ((v = value_of(w, len, "testguest.mode=", &vlen)))
        parse_mode(v, vlen, p);
    else if ((v = value_of(w, len, "testguest.mem_mib=", &vlen)))
        p->has_mem_mib = parse_u64(v, vlen, &p->mem_mib);
    else if ((v = value_of(w, len, "testguest.cpus=", &vlen)))
        p->has_cpus = parse_u64(v, vlen, &p->cpus);
    else if ((v = value_of(w, len, "testguest.acpi=", &vlen)))
        parse_acpi(v, vlen, p);
    else if ((v = value_of(w, len, "testguest.virtio=", &vlen)))
        parse_virtio(v, vlen, p);
    else if ((v = value_of(w, len, "testguest.finish=", &vlen)))
        parse_finish(v, vlen, p);
    else if ((v = value_of(w, len, "testguest.bench=", &vlen)))
        parse_bench(v, vlen, p);
    else if ((v = value_of(w, len, "testguest.bench_mib=", &vlen)))
        parse_u64(v, vlen, &p->bench_mib);
    else if ((v = value_of(w, len, "testguest.bench_frame=", &vlen)))
        parse_u64(v, vlen, &p->bench_frame);
    else if ((v = value_of(w, len, "testguest.bench_depth=", &vlen)))
        parse_u64(v, vlen, &p->bench_depth);
    else if ((v = value_of(w, len, "testguest.hostile=", &vlen)))
        parse_hostile(v, vlen, p);
    else if ((v = value_of(w, len, "testguest.insn=", &vlen))) {
        p->insn = v;
        p->insn_len = vlen;
    }
}

void cmdline_parse(const char *cmdline, struct guest_params *p)
{
    p->mode = MODE_SELFTEST;
    p->mode_name = "selftest";
    p->has_mem_mib = p->has_cpus = 0;
    p->mem_mib = p->cpus = 0;
    p->acpi = ACPI_UNKNOWN;
    p->has_virtio = 0;
    p->virtio_count = 0;
    p->virtio_overflow = 0;
    p->finish = FINISH_RESET;
    p->bench = BENCH_SEQREAD;
    p->bench_mib = 8;
    p->net_bench = NET_BENCH_NET_TX;
    p->bench_frame = 0;
    p->bench_depth = 1;
    p->insn = 0;
    p->insn_len = 0;
    p->hostile = HOSTILE_NOTIFY;
    if (!cmdline)
        return;

    const char *s = cmdline;
    while (*s) {
        while (is_space(*s))
            s++;
        const char *w = s;
        while (*s && !is_space(*s))
            s++;
        if (s > w)
            parse_word(w, (uint64_t)(s - w), p);
    }
}
