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

/// One word of a kernel command line, split and unquoted as the kernel does it.
public struct KernelParameter: Equatable, Sendable, CustomStringConvertible {
    /// The text before the first `=`, or the whole word when it has none.
    public var name: String
    /// The text after the first `=` with its quotes removed; nil for a word without `=`.
    public var value: String?
    /// The word as written on the command line, quotes and all.
    public var word: String

    public init(name: String, value: String?, word: String) {
        self.name = name
        self.value = value
        self.word = word
    }

    public var description: String { word }
}

extension Sequence where Element == KernelParameter {
    /// The value of the last `name=value` parameter, or nil when there is none.
    /// The last one counts because the kernel hands every occurrence to the
    /// parameter's handler in order, and handlers such as root= and init= keep
    /// what they were given last.
    public func value(of name: String) -> String? {
        var found: String?
        for parameter in self where parameter.name == name && parameter.value != nil { found = parameter.value }
        return found
    }

    /// Every value given to `name`, in order (console= may be given several times).
    public func values(of name: String) -> [String] {
        compactMap { $0.name == name ? $0.value : nil }
    }

    /// Whether any parameter is called `name`, with or without a value.
    public func contains(_ name: String) -> Bool {
        contains { $0.name == name }
    }
}

/// Splitting a command line into parameters, as Linux 6.1 does it.
///
/// The kernel's rules (lib/cmdline.c `next_arg()`, kernel/params.c
/// `parse_args()`, init/main.c `set_init_arg()`), which these functions follow
/// byte for byte:
/// - Words are separated by runs of whitespace in the kernel's `isspace()`:
///   space, \t, \n, \v, \f, \r, and also byte 0xa0 (Latin-1 no-break space).
///   The split is on bytes, so a UTF-8 character whose encoding holds 0xa0
///   (U+00A0, "à", ...) is cut in two; the pieces decode with U+FFFD.
/// - A `"` toggles quoting; whitespace inside quotes belongs to the word, and
///   the quotes themselves stay in it, except:
///   - a quote right after the first `=` is dropped, and so is the word's last
///     character when that is a quote (`root="/dev/vda"` is root, /dev/vda);
///   - a word that starts with a quote loses it, and again its last character
///     when that is a quote (`"a=b c"` is a, `b c`).
/// - An unterminated quote runs to the end of the line.
/// - The name ends at the first `=`, unless that `=` is the word's first
///   character (the kernel records an `=` at index 0 as "none yet"), and a word
///   without `=` has no value.
/// - A word `--` without a value ends the kernel's parameters; the words after
///   it go to init as its arguments, each as `name=value` or `name`, up to a
///   second `--`.
/// - A NUL byte ends the line.
extension KernelCommandLine {
    /// The kernel's parameters, in order, up to a `--`.
    public var parameters: [KernelParameter] { Self.parameters(in: value) }

    /// The arguments the kernel hands to init: the words after `--`.
    public var initArguments: [String] { Self.initArguments(in: value) }

    /// The value of the last `name=value` parameter; see `Sequence.value(of:)`.
    public func value(of name: String) -> String? { parameters.value(of: name) }

    /// Whether a kernel parameter (before any `--`) is called `name`.
    public func contains(_ name: String) -> Bool { parameters.contains(name) }

    /// The kernel's parameters in `line`, in order, up to a `--`.
    public static func parameters(in line: String) -> [KernelParameter] { split(line).parameters }

    /// The arguments init gets from `line`: the words after `--`.
    public static func initArguments(in line: String) -> [String] { split(line).initArguments }

    /// `line` with `words` added as kernel parameters: at the end, or just
    /// before the `--`, where they would otherwise be handed to init.
    public static func addingParameters(_ words: [String], to line: String) -> String {
        let added = words.filter { !$0.isEmpty }
        guard !added.isEmpty else { return line }
        guard let dashes = split(line).dashesOffset else {
            return line.isEmpty ? added.joined(separator: " ") : ([line] + added).joined(separator: " ")
        }
        // `--` starts a word, so the cut falls between whole characters, after whitespace.
        let bytes = Array(line.utf8)
        let head = String(decoding: bytes[..<dashes], as: UTF8.self)
        let tail = String(decoding: bytes[dashes...], as: UTF8.self)
        return head + added.joined(separator: " ") + " " + tail
    }

    /// The result of splitting a line.
    struct Split {
        var parameters: [KernelParameter] = []
        var initArguments: [String] = []
        /// The byte offset of the `--` word that ends the kernel's parameters.
        var dashesOffset: Int?
    }

    static func split(_ line: String) -> Split {
        // The kernel cuts words out by writing NULs into its copy of the line;
        // the same is done here on a NUL-terminated copy, so every quirk carries over.
        let original = Array(line.utf8.prefix { $0 != 0 }) + [0]
        var buffer = original
        var position = 0
        var split = Split()
        let kernel = parseArgs(&buffer, original: original, from: &position)
        split.parameters = kernel.parameters
        split.dashesOffset = kernel.dashesOffset
        if kernel.dashesOffset != nil {
            // set_init_arg() puts back the `=` that next_arg() replaced with a NUL.
            split.initArguments = parseArgs(&buffer, original: original, from: &position).parameters.map { parameter in
                parameter.value.map { parameter.name + "=" + $0 } ?? parameter.name
            }
        }
        return split
    }

    /// parse_args(): the words from `position` up to the end or a `--` without a value.
    private static func parseArgs(
        _ buffer: inout [UInt8], original: [UInt8], from position: inout Int
    ) -> (parameters: [KernelParameter], dashesOffset: Int?) {
        var parameters: [KernelParameter] = []
        position = skipSpaces(buffer, from: position)
        while buffer[position] != 0 {
            let start = position
            let word = nextArg(&buffer, at: start)
            position = word.next
            let name = cString(buffer, at: word.name)
            let value = word.value.map { cString(buffer, at: $0) }
            if value == nil && name == "--" { return (parameters, start) }
            let text = String(decoding: original[start..<word.end], as: UTF8.self)
            parameters.append(KernelParameter(name: name, value: value, word: text))
        }
        return (parameters, nil)
    }

    /// next_arg(): cuts the word at `start` (not whitespace, not NUL) out of
    /// `buffer`. Returns where its name and value start, where the word ends in
    /// the original text, and where the next word starts.
    private static func nextArg(_ buffer: inout [UInt8], at start: Int) -> (name: Int, value: Int?, end: Int, next: Int) {
        let quote = UInt8(ascii: "\"")
        var args = start
        var inQuote = false
        var quoted = false
        if buffer[args] == quote {
            args += 1
            inQuote = true
            quoted = true
        }
        var i = 0
        var equals = 0
        while buffer[args + i] != 0 {
            let byte = buffer[args + i]
            if isSpace(byte) && !inQuote { break }
            // An `=` at index 0 leaves `equals` at 0, meaning none found yet.
            if equals == 0 && byte == UInt8(ascii: "=") { equals = i }
            if byte == quote { inQuote.toggle() }
            i += 1
        }
        var value: Int?
        if equals != 0 {
            buffer[args + equals] = 0
            var valueStart = args + equals + 1
            if buffer[valueStart] == quote {
                valueStart += 1
                if buffer[args + i - 1] == quote { buffer[args + i - 1] = 0 }
            }
            value = valueStart
        }
        if quoted && i > 0 && buffer[args + i - 1] == quote { buffer[args + i - 1] = 0 }
        var next = args + i
        if buffer[next] != 0 {
            buffer[next] = 0
            next += 1
        }
        return (args, value, args + i, skipSpaces(buffer, from: next))
    }

    /// The kernel's isspace() (lib/ctype.c), which counts 0xa0 as a space.
    static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || (0x09...0x0d).contains(byte) || byte == 0xa0
    }

    private static func skipSpaces(_ buffer: [UInt8], from position: Int) -> Int {
        var position = position
        while isSpace(buffer[position]) { position += 1 }
        return position
    }

    private static func cString(_ buffer: [UInt8], at start: Int) -> String {
        String(decoding: buffer[start...].prefix { $0 != 0 }, as: UTF8.self)
    }
}
