#include "smp.h"
#include "apic.h"
#include "hostile.h"
#include "idt.h"
#include "io.h"
#include "kstring.h"
#include "print.h"
#include "report.h"
#include "zeropage.h"

/* ICR low-dword values (Intel SDM vol. 3, 10.6.1). */
#define ICR_INIT 0x00000500
#define ICR_STARTUP 0x00000600
#define ICR_LEVEL_ASSERT 0x00004000

/* The SDM asks for 10 ms after INIT and 200 us between SIPIs; KVM needs
 * neither, and the emulating host is slow, so they are kept as asked but
 * measured with the LAPIC timer rather than with loop counts. */
#define INIT_DELAY_US 10000
#define SIPI_DELAY_US 200
#define CHECKIN_TIMEOUT_US 3000000
#define CHECKIN_SPIN_LIMIT 300000

extern char ap_trampoline_start[], ap_trampoline_end[], ap_trampoline_cr3[];

/* Written by the APs: one flag per APIC id, plus a running count. */
static volatile uint8_t ap_seen[256];
static volatile uint32_t ap_count;

void ap_main(void)
{
    idt_load(); /* a faulting AP then reports instead of triple-faulting */
    uint32_t id = cpu_apic_id();
    __atomic_store_n(&ap_seen[id & 0xff], 1, __ATOMIC_RELEASE);
    __atomic_fetch_add(&ap_count, 1, __ATOMIC_SEQ_CST); /* lock xadd/add */
    hostile_ap_work(); /* returns unless hostile mode wants this AP */
    halt_forever();
}

/* Copies the trampoline to its low page and tells it the page tables. */
static void install_trampoline(void)
{
    uint64_t size = (uint64_t)(ap_trampoline_end - ap_trampoline_start);
    uint64_t cr3_offset = (uint64_t)(ap_trampoline_cr3 - ap_trampoline_start);
    memcpy((void *)AP_TRAMPOLINE_BASE, ap_trampoline_start, size);
    *(volatile uint32_t *)(AP_TRAMPOLINE_BASE + cr3_offset) = (uint32_t)read_cr3();
}

/* INIT, then two STARTUP IPIs (MP spec B.4).  An AP already running
 * ignores the second SIPI. */
static int start_ap(uint8_t apic_id)
{
    if (lapic_send_ipi(apic_id, ICR_INIT | ICR_LEVEL_ASSERT))
        return -1;
    lapic_delay_us(INIT_DELAY_US);
    for (int i = 0; i < 2; i++) {
        if (lapic_send_ipi(apic_id, ICR_STARTUP | ICR_LEVEL_ASSERT | AP_SIPI_VECTOR))
            return -1;
        lapic_delay_us(SIPI_DELAY_US);
    }
    return 0;
}

static void wait_for_aps(uint32_t expected)
{
    lapic_stopwatch_start();
    for (int i = 0; i < CHECKIN_SPIN_LIMIT; i++) {
        if (__atomic_load_n(&ap_count, __ATOMIC_ACQUIRE) >= expected)
            return;
        if (lapic_elapsed_us() > CHECKIN_TIMEOUT_US)
            return;
        cpu_relax();
    }
}

/* "0 1 2 3" for the ids that came up (want_up) or did not. */
static void format_ids(char *buf, unsigned size, const struct mp_info *mp, uint8_t bsp, int want_up)
{
    unsigned len = 0;
    buf[0] = 0;
    for (unsigned i = 0; i < mp->cpu_count; i++) {
        uint8_t id = mp->apic_ids[i];
        int up = id == bsp || ap_seen[id];
        if (up == want_up && len < size)
            len += ksnprintf(buf + len, size - len, len ? " %u" : "%u", id);
    }
}

void check_smp(const struct guest_params *params, const struct mp_info *mp)
{
    const char *name = "smp";
    if (!mp->found) {
        report_fail(name, "no valid MP table to take the CPU list from");
        return;
    }
    if (!e820_range_is_ram(AP_TRAMPOLINE_BASE, AP_TRAMPOLINE_BASE + 4096)) {
        report_fail(name, "trampoline page 0x%x expected to be RAM, is not", AP_TRAMPOLINE_BASE);
        return;
    }

    uint8_t bsp = (uint8_t)cpu_apic_id();
    uint32_t aps = 0, ipi_errors = 0;
    install_trampoline();
    lapic_enable(VEC_SPURIOUS);
    for (unsigned i = 0; i < mp->cpu_count; i++) {
        if (mp->apic_ids[i] == bsp)
            continue;
        aps++;
        if (start_ap(mp->apic_ids[i]))
            ipi_errors++;
    }
    wait_for_aps(aps);

    uint32_t up = __atomic_load_n(&ap_count, __ATOMIC_ACQUIRE) + 1;
    uint64_t expected = params->has_cpus ? params->cpus : mp->cpu_count;
    char ids[4 * MP_MAX_CPUS], missing[4 * MP_MAX_CPUS];
    format_ids(ids, sizeof ids, mp, bsp, 1);
    format_ids(missing, sizeof missing, mp, bsp, 0);
    if (up != expected || missing[0]) {
        report_fail(name, "expected %lu cpus, %u came up (apic ids %s); MP table entries that did not: %s%s",
                    expected, up, ids, missing[0] ? missing : "none", ipi_errors ? "; IPIs stayed pending" : "");
        return;
    }
    if (up == 1)
        report_pass(name, "1 cpu");
    else
        report_pass(name, "%u cpus: apic ids %s", up, ids);
}
