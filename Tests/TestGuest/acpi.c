#include "acpi.h"
#include "apic.h"
#include "io.h"
#include "kstring.h"
#include "print.h"
#include "report.h"
#include "virtio.h"
#include "zeropage.h"

/* RSDP layout (ACPI 6.x 5.2.5.3). */
#define RSDP_SIGNATURE "RSD PTR "
#define RSDP_V1_BYTES 20
#define RSDP_BYTES 36
#define RSDP_REVISION 15
#define RSDP_LENGTH 20
#define RSDP_XSDT 24

/* System description table header (5.2.6). */
#define SDT_HEADER_BYTES 36
#define SDT_LENGTH 4

/* FADT fields (5.2.9). */
#define FADT_DSDT 40
#define FADT_FLAGS 112
#define FADT_X_DSDT 140
#define FADT_HW_REDUCED_ACPI (1u << 20)

/* MADT (5.2.12): interrupt controller structures start after the local
 * APIC address and flags. */
#define MADT_ENTRIES 44
#define MADT_LOCAL_APIC 0
#define MADT_IO_APIC 1
#define MADT_LAPIC_ENABLED 0x1

/* AML encodings (20.2.3): a String is 0x0d, the bytes and a NUL; a DWord
 * constant is 0x0c and four little-endian bytes.  EISA ids are compressed
 * into a DWord: PNP0501 is 0x0105d041, PNP0303 is 0x0303d041. */
static const uint8_t aml_virtio_hid[] = { 0x0d, 'L', 'N', 'R', 'O', '0', '0', '0', '5', 0x00 };
static const uint8_t aml_com1_eisa[] = { 0x0c, 0x41, 0xd0, 0x05, 0x01 };
static const uint8_t aml_i8042_eisa[] = { 0x0c, 0x41, 0xd0, 0x03, 0x03 };

static const char *acpi_name = "acpi";

static uint8_t byte_sum(const uint8_t *p, uint64_t n)
{
    uint8_t sum = 0;
    while (n--)
        sum += *p++;
    return sum;
}

static uint32_t u32_at(const uint8_t *p, unsigned off) { return *(const uint32_t *)(p + off); }
static uint64_t u64_at(const uint8_t *p, unsigned off) { return *(const uint64_t *)(p + off); }

/* A table signature as printable text, for FAIL lines. */
static void signature_text(char out[5], const uint8_t *sig)
{
    for (int i = 0; i < 4; i++)
        out[i] = sig[i] >= 0x20 && sig[i] < 0x7f ? (char)sig[i] : '?';
    out[4] = 0;
}

/* Validates the table at addr: below 1 MiB, signature (any when sig is
 * NULL), sane length, checksum.  Returns it, or NULL after a FAIL line. */
static const uint8_t *get_table(uint64_t addr, const char *sig, const char *via)
{
    if (addr == 0 || addr > ACPI_TABLES_LIMIT - SDT_HEADER_BYTES) {
        report_fail(acpi_name, "%s pointer from %s expected in RAM below 1 MiB, got 0x%lx", sig ? sig : "table",
                    via, addr);
        return 0;
    }
    const uint8_t *t = phys_ptr(addr);
    char seen[5];
    signature_text(seen, t);
    if (sig && memcmp(t, sig, 4) != 0) {
        report_fail(acpi_name, "table at 0x%lx (from %s) expected signature %s, got %s", addr, via, sig, seen);
        return 0;
    }
    uint32_t len = u32_at(t, SDT_LENGTH);
    if (len < SDT_HEADER_BYTES || addr + len > ACPI_TABLES_LIMIT) {
        report_fail(acpi_name, "%s at 0x%lx length expected %u..0x%lx, got %u", seen, addr, SDT_HEADER_BYTES,
                    ACPI_TABLES_LIMIT - addr, len);
        return 0;
    }
    uint8_t sum = byte_sum(t, len);
    if (sum != 0) {
        report_fail(acpi_name, "%s at 0x%lx checksum over %u bytes expected to sum to 0, sums to 0x%x", seen, addr,
                    len, sum);
        return 0;
    }
    return t;
}

static const uint8_t *get_rsdp(void)
{
    uint64_t addr = zeropage_acpi_rsdp();
    if (addr == 0 || addr > ACPI_TABLES_LIMIT - RSDP_BYTES) {
        report_fail(acpi_name, "zero page acpi_rsdp_addr expected non-zero and below 1 MiB, got 0x%lx", addr);
        return 0;
    }
    const uint8_t *r = phys_ptr(addr);
    if (memcmp(r, RSDP_SIGNATURE, 8) != 0) {
        report_fail(acpi_name, "RSDP at 0x%lx expected signature \"RSD PTR \", not found", addr);
        return 0;
    }
    uint8_t sum = byte_sum(r, RSDP_V1_BYTES);
    if (sum != 0) {
        report_fail(acpi_name, "RSDP checksum over 20 bytes expected to sum to 0, sums to 0x%x", sum);
        return 0;
    }
    if (r[RSDP_REVISION] != 2) {
        report_fail(acpi_name, "RSDP revision expected 2, got %u", r[RSDP_REVISION]);
        return 0;
    }
    if (u32_at(r, RSDP_LENGTH) != RSDP_BYTES) {
        report_fail(acpi_name, "RSDP length expected %u, got %u", RSDP_BYTES, u32_at(r, RSDP_LENGTH));
        return 0;
    }
    sum = byte_sum(r, RSDP_BYTES);
    if (sum != 0) {
        report_fail(acpi_name, "RSDP extended checksum over 36 bytes expected to sum to 0, sums to 0x%x", sum);
        return 0;
    }
    return r;
}

/* Finds the FADT and MADT among the XSDT's entries, validating every
 * table listed; names gets the signatures in order ("FACP APIC"). */
static int walk_xsdt(const uint8_t *xsdt, const uint8_t **fadt, const uint8_t **madt, char *names,
                     unsigned names_size)
{
    uint32_t len = u32_at(xsdt, SDT_LENGTH);
    unsigned entries = (len - SDT_HEADER_BYTES) / 8, used = 0;
    names[0] = 0;
    *fadt = *madt = 0;
    for (unsigned i = 0; i < entries; i++) {
        const uint8_t *t = get_table(u64_at(xsdt, SDT_HEADER_BYTES + 8 * i), 0, "XSDT");
        if (!t)
            return -1;
        char sig[5];
        signature_text(sig, t);
        used += ksnprintf(names + used, names_size - used, used ? " %s" : "%s", sig);
        if (memcmp(t, "FACP", 4) == 0 && !*fadt)
            *fadt = t;
        else if (memcmp(t, "APIC", 4) == 0 && !*madt)
            *madt = t;
    }
    if (!*fadt || !*madt) {
        report_fail(acpi_name, "XSDT expected to list FACP and APIC, lists: %s", entries ? names : "nothing");
        return -1;
    }
    return 0;
}

static const uint8_t *get_dsdt(const uint8_t *fadt)
{
    uint32_t len = u32_at(fadt, SDT_LENGTH);
    if (len < FADT_FLAGS + 4) {
        report_fail(acpi_name, "FADT length expected at least %u, got %u", FADT_FLAGS + 4, len);
        return 0;
    }
    uint32_t flags = u32_at(fadt, FADT_FLAGS);
    if (!(flags & FADT_HW_REDUCED_ACPI)) {
        report_fail(acpi_name, "FADT flags expected HW_REDUCED_ACPI (bit 20), got 0x%x", flags);
        return 0;
    }
    uint64_t addr = len >= FADT_X_DSDT + 8 ? u64_at(fadt, FADT_X_DSDT) : 0;
    if (addr == 0)
        return get_table(u32_at(fadt, FADT_DSDT), "DSDT", "FADT DSDT");
    return get_table(addr, "DSDT", "FADT X_DSDT");
}

static int check_madt(const uint8_t *madt, const struct guest_params *params, struct acpi_info *info)
{
    uint32_t len = u32_at(madt, SDT_LENGTH);
    uint8_t seen[256];
    unsigned lapics = 0, ioapics = 0;
    uint32_t ioapic_addr = 0;
    memset(seen, 0, sizeof seen);
    if (len < MADT_ENTRIES) {
        report_fail(acpi_name, "MADT length expected at least %u, got %u", MADT_ENTRIES, len);
        return -1;
    }
    for (uint32_t off = MADT_ENTRIES; off < len;) {
        const uint8_t *e = madt + off;
        if (off + 2 > len || e[1] < 2 || off + e[1] > len) {
            report_fail(acpi_name, "MADT structure at offset %u (type %u, length %u) runs past the table (%u bytes)",
                        off, e[0], off + 2 > len ? 0 : e[1], len);
            return -1;
        }
        if (e[0] == MADT_LOCAL_APIC && e[1] >= 8) {
            uint8_t id = e[3];
            uint32_t flags = u32_at(e, 4);
            if (!(flags & MADT_LAPIC_ENABLED)) {
                report_fail(acpi_name, "MADT Local APIC %u expected the enabled flag, flags 0x%x", id, flags);
                return -1;
            }
            if (seen[id]++) {
                report_fail(acpi_name, "MADT lists Local APIC id %u more than once", id);
                return -1;
            }
            if (lapics < MP_MAX_CPUS)
                info->apic_ids[lapics] = id;
            lapics++;
        } else if (e[0] == MADT_IO_APIC && e[1] >= 12) {
            if (ioapics++ == 0)
                ioapic_addr = u32_at(e, 4);
        }
        off += e[1];
    }

    uint64_t want = params->has_cpus ? params->cpus : lapics;
    if (lapics != want || lapics > MP_MAX_CPUS) {
        report_fail(acpi_name, "MADT expected %lu Processor Local APIC structures, has %u", want, lapics);
        return -1;
    }
    for (unsigned id = 0; id < lapics; id++) {
        if (!seen[id]) {
            report_fail(acpi_name, "MADT expected Local APIC ids 0..%u, id %u is missing", lapics - 1, id);
            return -1;
        }
    }
    if (ioapics != 1 || ioapic_addr != IOAPIC_BASE) {
        report_fail(acpi_name, "MADT expected one I/O APIC at 0x%lx, has %u, first at 0x%x", (uint64_t)IOAPIC_BASE, ioapics,
                    ioapic_addr);
        return -1;
    }
    info->cpu_count = lapics;
    return 0;
}

static unsigned count_bytes(const uint8_t *hay, uint64_t len, const uint8_t *needle, uint64_t nlen)
{
    unsigned n = 0;
    for (uint64_t i = 0; i + nlen <= len; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, nlen) == 0)
            n++;
    return n;
}

static int check_dsdt(const uint8_t *dsdt, unsigned want_virtio)
{
    uint32_t len = u32_at(dsdt, SDT_LENGTH);
    const uint8_t *aml = dsdt + SDT_HEADER_BYTES;
    uint64_t aml_len = len - SDT_HEADER_BYTES;
    unsigned virtio = count_bytes(aml, aml_len, aml_virtio_hid, sizeof aml_virtio_hid);
    unsigned com1 = count_bytes(aml, aml_len, aml_com1_eisa, sizeof aml_com1_eisa);
    unsigned i8042 = count_bytes(aml, aml_len, aml_i8042_eisa, sizeof aml_i8042_eisa);
    if (virtio != want_virtio) {
        report_fail(acpi_name, "DSDT expected %u LNRO0005 (virtio-mmio) strings, found %u", want_virtio, virtio);
        return -1;
    }
    if (!com1 || !i8042) {
        report_fail(acpi_name, "DSDT expected the EISA ids PNP0501 (COM1) and PNP0303 (i8042), found %u and %u",
                    com1, i8042);
        return -1;
    }
    return 0;
}

static void check_tables(const struct guest_params *params, struct acpi_info *info)
{
    const uint8_t *rsdp = get_rsdp();
    if (!rsdp)
        return;
    const uint8_t *xsdt = get_table(u64_at(rsdp, RSDP_XSDT), "XSDT", "RSDP");
    if (!xsdt)
        return;
    const uint8_t *fadt, *madt, *dsdt;
    char names[64];
    if (walk_xsdt(xsdt, &fadt, &madt, names, sizeof names) || !(dsdt = get_dsdt(fadt)))
        return;
    if (check_madt(madt, params, info))
        return;
    info->found = 1; /* the CPU list is usable even if the DSDT is wrong */
    unsigned virtio = params->has_virtio ? params->virtio_count : 0;
    if (check_dsdt(dsdt, virtio))
        return;
    report_pass(acpi_name, "RSDP at 0x%lx, XSDT %s DSDT, %u cpus%s, %u virtio devices", (uint64_t)rsdp, names,
                info->cpu_count, params->has_cpus ? "" : " (count not checked)", virtio);
}

/* 1 when the command line holds word as a whole word. */
static int has_word(const char *cmdline, const char *word)
{
    uint64_t wlen = strnlen(word, CMDLINE_MAX);
    for (const char *s = cmdline; *s;) {
        while (*s == ' ')
            s++;
        const char *w = s;
        while (*s && *s != ' ')
            s++;
        if ((uint64_t)(s - w) == wlen && strncmp(w, word, wlen) == 0)
            return 1;
    }
    return 0;
}

static unsigned count_prefixed_words(const char *cmdline, const char *prefix)
{
    uint64_t plen = strnlen(prefix, CMDLINE_MAX);
    unsigned n = 0;
    for (const char *s = cmdline; *s;) {
        while (*s == ' ')
            s++;
        if (strncmp(s, prefix, plen) == 0)
            n++;
        while (*s && *s != ' ')
            s++;
    }
    return n;
}

/* --no-acpi: no RSDP anywhere the guest would look, and the devices are
 * announced on the command line for CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES. */
static void check_no_acpi(const struct guest_params *params)
{
    const char *name = "no-acpi";
    uint64_t rsdp = zeropage_acpi_rsdp();
    if (rsdp != 0) {
        report_fail(name, "zero page acpi_rsdp_addr expected 0, got 0x%lx", rsdp);
        return;
    }
    /* The BIOS area a guest scans for the RSDP, on 16-byte boundaries. */
    for (uint64_t a = ACPI_RSDP_LEGACY_ADDR; a < ACPI_TABLES_LIMIT; a += 16) {
        if (memcmp(phys_ptr(a), RSDP_SIGNATURE, 8) == 0) {
            report_fail(name, "expected no \"RSD PTR \" signature, found one at 0x%lx", a);
            return;
        }
    }
    const char *cmdline = zeropage_cmdline();
    if (!cmdline) {
        report_fail(name, "expected a readable command line to hold the virtio_mmio.device= stanzas");
        return;
    }
    unsigned want = params->has_virtio ? params->virtio_count : 0;
    for (unsigned i = 0; i < want; i++) {
        char stanza[64];
        ksnprintf(stanza, sizeof stanza, "virtio_mmio.device=4K@0x%lx:%u", virtio_mmio_base(i), virtio_gsi(i));
        if (!has_word(cmdline, stanza)) {
            report_fail(name, "expected %s (device %u) on the command line, not found", stanza, i);
            return;
        }
    }
    unsigned stanzas = count_prefixed_words(cmdline, "virtio_mmio.device=");
    if (stanzas != want) {
        report_fail(name, "expected %u virtio_mmio.device= stanzas, found %u", want, stanzas);
        return;
    }
    report_pass(name, "no RSDP, %u virtio_mmio.device= stanzas", want);
}

void check_acpi(const struct guest_params *params, struct acpi_info *info)
{
    memset(info, 0, sizeof *info);
    if (params->acpi == ACPI_ON)
        check_tables(params, info);
    else if (params->acpi == ACPI_OFF)
        check_no_acpi(params);
    else
        report_skip(acpi_name, "testguest.acpi not given");
}

void acpi_cpu_list(const struct acpi_info *info, struct mp_info *mp)
{
    memset(mp, 0, sizeof *mp);
    mp->found = info->found;
    mp->cpu_count = info->cpu_count;
    mp->bsp_index = -1;
    for (unsigned i = 0; i < info->cpu_count; i++) {
        mp->apic_ids[i] = info->apic_ids[i];
        if (info->apic_ids[i] == cpu_apic_id())
            mp->bsp_index = (int)i;
    }
}
