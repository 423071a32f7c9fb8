import SwiftVMMemory

/// A kernel command line checked against what the x86 kernel will accept.
public struct KernelCommandLine: Equatable, Sendable, CustomStringConvertible {
    /// The command line swiftvm gives an x86_64 guest unless told otherwise.
    ///
    /// - `console=ttyS0`: kernel messages go to the one emulated UART (COM1).
    /// - `reboot=k`: reboot by writing 0xfe to port 0x64, the i8042 reset line
    ///   swiftvm emulates. The kernel does that write itself, with or without
    ///   an i8042 driver. (The FADT's reset register names the same port, so
    ///   an ACPI reboot gets there too; the BIOS and PCI methods reach nothing
    ///   swiftvm emulates.)
    /// - `panic=1`: reboot one second after a panic instead of hanging, so the
    ///   VMM sees the guest stop.
    /// - `nomodule`: no module loading; the guest kernel is built without modules.
    /// - `8250.nr_uarts=1`: register exactly one 8250 UART. The seed's `=0`
    ///   would disable ttyS0 as well and hide the console; `1` keeps COM1 and
    ///   still stops the driver probing ports that do not exist.
    /// - `i8042.noaux i8042.nomux i8042.dumbkbd`: match the emulated i8042,
    ///   which has no mouse port, no multiplexer and only the reset command.
    /// - `swiotlb=noforce`: no bounce buffers; virtio DMA reaches all guest RAM.
    public static let defaultX86 = "console=ttyS0 reboot=k panic=1 nomodule 8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.dumbkbd swiotlb=noforce"

    /// The command line text, without the terminating NUL.
    public private(set) var value: String

    /// Checks `value` against the kernel's limits.
    public init(_ value: String) throws(KernelCommandLineError) {
        try Self.validate(value)
        self.value = value
    }

    /// Adds `parameters` after a space (or as the whole line when empty).
    public mutating func append(_ parameters: String) throws(KernelCommandLineError) {
        guard !parameters.isEmpty else { return }
        let joined = value.isEmpty ? parameters : value + " " + parameters
        try Self.validate(joined)
        value = joined
    }

    /// The bytes the kernel reads: UTF-8 text and the terminating NUL.
    public var bytes: [UInt8] { Array(value.utf8) + [0] }

    /// Length in bytes without the NUL, for the zero page's `cmdline_size`.
    public var size: Int { value.utf8.count }

    public var description: String { value }

    /// Writes the NUL-terminated command line; the zero page points at `address`.
    public func write(to memory: GuestMemory, at address: GuestAddress = X86Layout.commandLine) throws(GuestMemoryError) {
        try memory.write(bytes, at: address)
    }

    private static func validate(_ value: String) throws(KernelCommandLineError) {
        var length = 0
        for byte in value.utf8 {
            // The kernel stops at the first NUL; anything after it would be lost silently.
            if byte == 0 { throw .containsNUL(offset: length) }
            length += 1
        }
        if length + 1 > X86Layout.commandLineCapacity { throw .tooLong(bytes: length) }
    }
}

/// Why a kernel command line was refused.
public enum KernelCommandLineError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The text is longer than COMMAND_LINE_SIZE allows; the kernel would truncate it.
    case tooLong(bytes: Int)
    /// A NUL byte at `offset` would end the command line early.
    case containsNUL(offset: Int)

    public var description: String {
        switch self {
        case .tooLong(let bytes):
            "the kernel command line is \(bytes) bytes; the limit is \(X86Layout.commandLineCapacity - 1) plus the terminating NUL"
                + " (shorten or drop some parameters)"
        case .containsNUL(let offset):
            "the kernel command line contains a NUL byte at offset \(offset); the kernel would ignore everything after it"
                + " (remove the NUL)"
        }
    }
}
