import SwiftVMMemory

/// The x86_64 guest-physical memory map (Firecracker's layout).
///
/// Everything the VMM writes into guest RAM before boot, and every MMIO window
/// it decodes, has its address here, so the whole map reads from one file.
public enum X86Layout {
    /// GDT with the null, code, data and TSS descriptors.
    public static let gdt = GuestAddress(0x500)
    /// An empty IDT; the kernel installs its own.
    public static let idt = GuestAddress(0x520)
    /// PVH entry only: `struct hvm_start_info` (EBX points here), its module
    /// list (room for ``pvhModulesCapacity`` entries of 32 bytes) and its
    /// memory map (up to 128 entries of 24 bytes, so it ends by 0x6d00).
    /// The Linux 64-bit entry uses none of them.
    public static let pvhStartInfo = GuestAddress(0x6000)
    public static let pvhModules = GuestAddress(0x6040)
    public static let pvhModulesCapacity = 6
    public static let pvhMemoryMap = GuestAddress(0x6100)
    /// The zero page (`struct boot_params`); RSI points here at entry.
    public static let zeroPage = GuestAddress(0x7000)
    /// Initial RSP and RBP.
    public static let bootStack = GuestAddress(0x8ff0)
    /// PML4, PDPT and PD that identity-map the first 1 GiB with 2 MiB pages.
    public static let pml4 = GuestAddress(0x9000)
    public static let pdpt = GuestAddress(0xa000)
    public static let pd = GuestAddress(0xb000)
    /// The kernel command line, NUL-terminated.
    public static let commandLine = GuestAddress(0x20000)
    /// Longest command line the kernel accepts, terminating NUL included
    /// (Linux's COMMAND_LINE_SIZE on x86).
    public static let commandLineCapacity = 2048
    /// Start of the extended BIOS data area; from here to 1 MiB is reserved in
    /// e820 and holds the MP table and ACPI tables.
    public static let ebdaStart = GuestAddress(0x9fc00)
    /// Where the MP floating pointer and table are written.
    public static let mpTable = ebdaStart
    /// Where the ACPI RSDP is written.
    public static let rsdp = GuestAddress(0xe0000)
    /// Where the ACPI tables other than the RSDP (XSDT, FADT, MADT, DSDT) are
    /// packed. The MP table at ``mpTable`` takes at most 5,364 bytes (254
    /// vCPUs) and so ends by 0xa10f4; the next page leaves 248 KiB below
    /// ``rsdp`` for the tables.
    public static let acpiTables = GuestAddress(0xa2000)
    /// Start of high memory; kernels load above it.
    public static let highMemory = GuestAddress(0x10_0000)
    /// The 32-bit MMIO gap: no RAM from here to 4 GiB.
    public static let mmioGapStart = GuestAddress(0xc000_0000)
    public static let mmioGapEnd = GuestAddress(0x1_0000_0000)
    /// Firecracker's boot-timer device: the guest writes 123 here when it is up.
    public static let bootTimer = GuestAddress(0xc000_0000)
    /// First virtio-mmio window; each device takes 4 KiB from here up.
    public static let virtioMMIOStart = GuestAddress(0xc000_1000)
    public static let virtioMMIOSize: UInt64 = 0x1000
    public static let ioapic = GuestAddress(0xfec0_0000)
    public static let lapic = GuestAddress(0xfee0_0000)
    /// Three pages KVM needs for the real-mode TSS (`KVM_SET_TSS_ADDR`).
    public static let kvmTSS = GuestAddress(0xfffb_d000)

    /// GSIs (IOAPIC pins) of the legacy devices.
    public static let i8042IRQ: UInt32 = 1
    public static let com1IRQ: UInt32 = 4
    /// The first GSI handed to virtio-mmio devices.
    public static let firstVirtioIRQ: UInt32 = 5

    /// I/O ports of the legacy devices.
    public static let com1Port: UInt16 = 0x3f8
    public static let i8042DataPort: UInt16 = 0x60
    /// The i8042 command port; writing 0xFE here pulses the CPU reset line,
    /// which is also the FADT's ACPI reset register.
    public static let i8042CommandPort: UInt16 = 0x64

    /// The FADT's SLEEP_CONTROL_REG: one byte at this I/O port (ACPI 6.5
    /// §4.8.3.7). A guest powers off by writing `SLP_EN | SLP_TYP << 2`, with
    /// SLP_EN = 0x20 and SLP_TYP = 5 from the DSDT's `\_S5_` package, so the
    /// byte is 0x34; ``ACPISleepControl/requestsPowerOff(_:)`` decodes it.
    /// Writes with SLP_EN clear change nothing.
    ///
    /// 0x600 is where QEMU's PC machines put their ACPI PM block; no device
    /// swiftvm models, and nothing Linux probes on its own, uses it.
    public static let acpiSleepControlPort: UInt16 = 0x600
    /// The FADT's SLEEP_STATUS_REG, one byte. Before sleeping, Linux writes
    /// 0x80 (WAK_STS, write-one-to-clear) here; reads should return 0, which
    /// says "not waking". Nothing in it matters for power-off.
    public static let acpiSleepStatusPort: UInt16 = 0x601

    /// Guest RAM regions for `size` bytes of RAM: below the MMIO gap first,
    /// the remainder from 4 GiB up.
    public static func ramRegions(size: UInt64) -> [(start: GuestAddress, size: UInt64)] {
        let lowLimit = mmioGapStart.rawValue
        if size <= lowLimit { return [(GuestAddress(0), size)] }
        return [(GuestAddress(0), lowLimit), (mmioGapEnd, size - lowLimit)]
    }
}
