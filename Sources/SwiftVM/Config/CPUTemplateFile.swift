import SwiftVMBoot

/// Reads a Firecracker custom CPU template (x86_64) into a `CPUTemplate`.
///
/// The format is Firecracker's (docs/cpu_templates/cpu-templates.md and
/// schema.json), so templates made with its `cpu-template-helper` work here:
///
///     { "kvm_capabilities": ["!56"],
///       "cpuid_modifiers": [ { "leaf": "0x1", "subleaf": "0x0", "flags": 0,
///           "modifiers": [ { "register": "ecx", "bitmap": "0bxx…" } ] } ],
///       "msr_modifiers": [ { "addr": "0x10a", "bitmap": "0b00…" } ] }
///
/// Where Firecracker is strict, so is this reader: leaf, subleaf and addr are
/// strings with a `0x` or `0b` prefix (no decimal, no JSON numbers), flags is
/// a JSON integer, and an unknown top-level field is an error. Inner objects
/// may carry extra fields, which are ignored, as Firecracker ignores them.
/// Two choices differ: `kvm_capabilities` is checked for syntax but not acted
/// on (swiftvm has no list of capabilities to adjust), and bitmaps must have
/// all 32 or 64 characters, where Firecracker pads a short one with `x`.
///
/// Stricter than Firecracker, this reader also refuses an MSR named twice
/// (by value, so `0x10` and `0b10000` are the same MSR), a CPUID leaf and
/// subleaf named twice, a register named twice in one entry, and more MSRs
/// than KVM reads or writes in one call (`CPUTemplate.maximumMSRCount`): each
/// is a mistake whose effect would otherwise depend on the order of entries.
public enum CPUTemplateFile {
    /// Parses template JSON; `source` (usually the file's path) prefixes every message.
    public static func parse(_ json: [UInt8], source: String) throws(CPUTemplateError) -> CPUTemplate {
        do {
            return try JSONInput.decode(TemplateDocument.self, from: json, source: source).template
        } catch {
            throw CPUTemplateError(error)
        }
    }

    public static func parse(_ json: String, source: String) throws(CPUTemplateError) -> CPUTemplate {
        try parse(Array(json.utf8), source: source)
    }
}

/// What is wrong with a template, and where: `path` is the JSON path of the
/// offending value (`cpuid_modifiers[0].modifiers[1].bitmap`), empty for the
/// document as a whole; `line` and `column` (1-based) locate it in the file,
/// and are 0 when unknown.
public struct CPUTemplateError: Error, Equatable, Sendable, CustomStringConvertible {
    public var source: String
    public var path: String
    public var problem: String
    public var line: Int
    public var column: Int

    public init(source: String, path: String, problem: String, line: Int = 0, column: Int = 0) {
        self.source = source
        self.path = path
        self.problem = problem
        self.line = line
        self.column = column
    }

    init(_ error: JSONInputError) {
        self.init(source: error.source, path: error.path, problem: error.problem, line: error.line, column: error.column)
    }

    /// `cpu template FILE:LINE:COLUMN: PATH: PROBLEM`, leaving out what is unknown or empty.
    public var description: String {
        let place = line > 0 ? "\(source):\(line):\(column)" : source
        return path.isEmpty ? "cpu template \(place): \(problem)" : "cpu template \(place): \(path): \(problem)"
    }
}

/// A problem with the value being decoded; `JSONInput` adds its path and position.
private struct TemplateProblem: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Any field name, and array positions for errors that point into an array.
private struct TemplateKey: CodingKey {
    var stringValue: String
    var intValue: Int?

    init(_ name: String) { (stringValue, intValue) = (name, nil) }
    init(stringValue: String) { self.init(stringValue) }
    init(intValue: Int) { (stringValue, self.intValue) = ("Index \(intValue)", intValue) }
}

/// An error at `path` below `codingPath`, for a problem found after the value was decoded.
private func problem(at codingPath: [any CodingKey], _ path: [TemplateKey], _ message: String) -> DecodingError {
    .dataCorrupted(DecodingError.Context(codingPath: codingPath + path, debugDescription: message))
}

/// The template's top-level object. It checks its own field names, to point
/// at aarch64 templates, so the decoder's generic unknown-field rule is off.
private struct TemplateDocument: Decodable, JSONAllowsUnknownFields {
    static let fieldNames = ["kvm_capabilities", "cpuid_modifiers", "msr_modifiers"]

    var template = CPUTemplate()

    init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: TemplateKey.self)
        for key in fields.allKeys where !Self.fieldNames.contains(key.stringValue) {
            let hint = key.stringValue == "reg_modifiers" || key.stringValue == "vcpu_features" ? " (it belongs to aarch64 templates)" : ""
            throw DecodingError.dataCorruptedError(
                forKey: key, in: fields,
                debugDescription: "unknown field\(hint); an x86_64 template has kvm_capabilities, cpuid_modifiers and msr_modifiers")
        }
        // Firecracker defaults a missing list to empty but refuses null, so no decodeIfPresent.
        if fields.contains(TemplateKey("kvm_capabilities")) {
            _ = try fields.decode([KVMCapability].self, forKey: TemplateKey("kvm_capabilities"))
        }
        if fields.contains(TemplateKey("cpuid_modifiers")) {
            try readCPUIDModifiers(fields.nestedUnkeyedContainer(forKey: TemplateKey("cpuid_modifiers")))
        }
        if fields.contains(TemplateKey("msr_modifiers")) {
            try readMSRModifiers(fields.nestedUnkeyedContainer(forKey: TemplateKey("msr_modifiers")))
        }
    }

    mutating func readCPUIDModifiers(_ list: any UnkeyedDecodingContainer) throws {
        var list = list
        var firstIndex: [UInt64: Int] = [:]
        while !list.isAtEnd {
            let index = list.currentIndex
            let modifier = try list.decode(CPUIDEntryFields.self).modifier
            let leafAndSubleaf = UInt64(modifier.leaf) << 32 | UInt64(modifier.subleaf)
            if let first = firstIndex[leafAndSubleaf] {
                throw problem(at: list.codingPath, [TemplateKey(intValue: index)], """
                    leaf 0x\(String(modifier.leaf, radix: 16)) subleaf 0x\(String(modifier.subleaf, radix: 16)) is already \
                    modified by cpuid_modifiers[\(first)]; merge the two entries into one
                    """)
            }
            firstIndex[leafAndSubleaf] = index
            template.cpuidModifiers.append(modifier)
        }
    }

    mutating func readMSRModifiers(_ list: any UnkeyedDecodingContainer) throws {
        var list = list
        if let count = list.count, count > CPUTemplate.maximumMSRCount {
            throw problem(at: list.codingPath, [], """
                \(count) entries; KVM reads and writes at most \(CPUTemplate.maximumMSRCount) MSRs in one call, \
                so a template may modify at most that many
                """)
        }
        var firstIndex: [UInt32: Int] = [:]
        while !list.isAtEnd {
            let index = list.currentIndex
            let modifier = try list.decode(MSREntryFields.self).modifier
            if let first = firstIndex[modifier.address] {
                throw problem(at: list.codingPath, [TemplateKey(intValue: index), TemplateKey("addr")], """
                    MSR 0x\(String(modifier.address, radix: 16)) is already modified by msr_modifiers[\(first)]; \
                    name each MSR once
                    """)
            }
            firstIndex[modifier.address] = index
            template.msrModifiers.append(modifier)
        }
    }
}

/// `"N"` asks for KVM capability N, `"!N"` drops it from the checked list;
/// swiftvm checks the syntax only.
private struct KVMCapability: Decodable {
    init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        let digits = text.hasPrefix("!") ? text.dropFirst() : Substring(text)
        guard UInt32(digits) != nil else {
            throw TemplateProblem("\"\(text)\" is not a KVM capability number, optionally preceded by !")
        }
    }
}

extension KeyedDecodingContainer {
    /// Throws unless `key` is present; `required` lists the fields the entry cannot do without.
    fileprivate func require(_ key: Key, _ required: String) throws {
        guard contains(key) else {
            throw DecodingError.keyNotFound(key, DecodingError.Context(codingPath: codingPath, debugDescription: "missing; \(required)"))
        }
    }

    fileprivate func decodeRequired<T: Decodable>(_ type: T.Type, _ key: Key, _ required: String) throws -> T {
        try require(key, required)
        return try decode(type, forKey: key)
    }
}

/// One `cpuid_modifiers` entry; extra fields are ignored, as in Firecracker.
private struct CPUIDEntryFields: Decodable, JSONAllowsUnknownFields {
    enum CodingKeys: String, CodingKey { case leaf, subleaf, flags, modifiers }

    var modifier: CPUIDModifier

    init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: CodingKeys.self)
        let required = "each cpuid_modifiers entry needs leaf, subleaf, flags and modifiers"
        let leaf = try fields.decodeRequired(PrefixedNumber.self, .leaf, required).value
        let subleaf = try fields.decodeRequired(PrefixedNumber.self, .subleaf, required).value
        // A KVM flags word: Firecracker reads it as a plain JSON integer.
        let flags = try fields.decodeRequired(UInt32.self, .flags, required)
        try fields.require(.modifiers, required)
        var list = try fields.nestedUnkeyedContainer(forKey: .modifiers)
        var registers: [(register: CPUIDRegister, bitmap: RegisterBitmap)] = []
        var firstIndex: [CPUIDRegister: Int] = [:]
        while !list.isAtEnd {
            let index = list.currentIndex
            let entry = try list.decode(RegisterEntryFields.self)
            if let first = firstIndex[entry.register] {
                throw problem(at: list.codingPath, [TemplateKey(intValue: index), TemplateKey("register")], """
                    \(entry.register.rawValue) is already modified by modifiers[\(first)] of this entry; \
                    give each register one bitmap
                    """)
            }
            firstIndex[entry.register] = index
            registers.append((entry.register, entry.bitmap))
        }
        modifier = CPUIDModifier(leaf: leaf, subleaf: subleaf, flags: flags, registers: registers)
    }
}

/// One register pattern inside a `cpuid_modifiers` entry.
private struct RegisterEntryFields: Decodable, JSONAllowsUnknownFields {
    enum CodingKeys: String, CodingKey { case register, bitmap }

    var register: CPUIDRegister
    var bitmap: RegisterBitmap

    init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: CodingKeys.self)
        let required = "each register modifier needs register and bitmap"
        let name = try fields.decodeRequired(String.self, .register, required)
        guard let register = CPUIDRegister(rawValue: name) else {
            throw DecodingError.dataCorruptedError(forKey: .register, in: fields, debugDescription: "\"\(name)\" is not one of eax, ebx, ecx, edx")
        }
        self.register = register
        bitmap = try fields.decodeRequired(BitmapText.self, .bitmap, required).bitmap(width: 32)
    }
}

/// One `msr_modifiers` entry; extra fields are ignored, as in Firecracker.
private struct MSREntryFields: Decodable, JSONAllowsUnknownFields {
    enum CodingKeys: String, CodingKey { case addr, bitmap }

    var modifier: MSRModifier

    init(from decoder: any Decoder) throws {
        let fields = try decoder.container(keyedBy: CodingKeys.self)
        let required = "each msr_modifiers entry needs addr and bitmap"
        let address = try fields.decodeRequired(PrefixedNumber.self, .addr, required).value
        let bitmap = try fields.decodeRequired(BitmapText.self, .bitmap, required).bitmap(width: 64)
        modifier = MSRModifier(address: address, bitmap: bitmap)
    }
}

/// A bitmap string, parsed once its width is known.
private struct BitmapText: Decodable {
    var text: String
    var codingPath: [any CodingKey]

    init(from decoder: any Decoder) throws {
        text = try decoder.singleValueContainer().decode(String.self)
        codingPath = decoder.codingPath
    }

    func bitmap(width: Int) throws -> RegisterBitmap {
        do {
            return try RegisterBitmap(parsing: text, width: width)
        } catch {
            throw problem(at: codingPath, [], error.description)
        }
    }
}

/// A leaf, subleaf or MSR address: a string in hexadecimal (`"0x1"`) or
/// binary (`"0b1"`), the two forms Firecracker accepts.
private struct PrefixedNumber: Decodable {
    var value: UInt32

    init(from decoder: any Decoder) throws {
        let node = try decoder.singleValueContainer().decode(JSONValue.self)
        guard case .string(let text) = node.content else {
            throw TemplateProblem("expected a string such as \"0x1\", found \(node.kindDescription)")
        }
        let radix: Int
        let name: String
        if text.hasPrefix("0x") { (radix, name) = (16, "hexadecimal") }
        else if text.hasPrefix("0b") { (radix, name) = (2, "binary") }
        else { throw TemplateProblem("\"\(text)\" has no 0x (hexadecimal) or 0b (binary) prefix") }
        let digits = text.dropFirst(2)
        guard !digits.isEmpty, digits.allSatisfy({ ($0.hexDigitValue ?? radix) < radix }) else {
            throw TemplateProblem("\"\(text)\" is not a \(name) number")
        }
        guard let result = UInt32(digits, radix: radix) else { throw TemplateProblem("\"\(text)\" does not fit in 32 bits") }
        value = result
    }
}
