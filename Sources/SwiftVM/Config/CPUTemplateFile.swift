import FoundationEssentials
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
public enum CPUTemplateFile {
    /// Parses template JSON; `source` (usually the file's path) prefixes every message.
    public static func parse(_ json: [UInt8], source: String) throws(CPUTemplateError) -> CPUTemplate {
        // JSONDecoder here reports no position for syntax errors and accepts
        // trailing commas that Firecracker's parser refuses, so check first.
        if let failure = JSONSyntax.firstError(in: json) {
            throw CPUTemplateError(source: source, path: "", problem: failure)
        }
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: Data(json))
        } catch {
            throw CPUTemplateError(source: source, path: "", problem: "invalid JSON: \(error)")
        }
        return try TemplateReader(source: source).template(root)
    }

    public static func parse(_ json: String, source: String) throws(CPUTemplateError) -> CPUTemplate {
        try parse(Array(json.utf8), source: source)
    }
}

/// What is wrong with a template, and where: `path` is the JSON path of the
/// offending value (`cpuid_modifiers[0].modifiers[1].bitmap`), empty for the
/// document as a whole.
public struct CPUTemplateError: Error, Equatable, Sendable, CustomStringConvertible {
    public var source: String
    public var path: String
    public var problem: String

    public init(source: String, path: String, problem: String) {
        self.source = source
        self.path = path
        self.problem = problem
    }

    public var description: String {
        path.isEmpty ? "cpu template \(source): \(problem)" : "cpu template \(source): \(path): \(problem)"
    }
}

/// Any JSON value, decoded without a schema so that the reader can name the
/// exact field that is missing or of the wrong type.
private enum JSONValue: Decodable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Int64.self) { self = .integer(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    var kind: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .integer, .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// Walks the decoded JSON, turning each field into model values or an error
/// that names its path.
private struct TemplateReader {
    let source: String

    static let topLevelFields = ["kvm_capabilities", "cpuid_modifiers", "msr_modifiers"]

    func failure(_ path: String, _ problem: String) -> CPUTemplateError {
        CPUTemplateError(source: source, path: path, problem: problem)
    }

    func template(_ root: JSONValue) throws(CPUTemplateError) -> CPUTemplate {
        let fields = try object(root, "")
        for key in fields.keys.sorted() where !Self.topLevelFields.contains(key) {
            let hint = key == "reg_modifiers" || key == "vcpu_features" ? " (it belongs to aarch64 templates)" : ""
            throw failure(key, "unknown field\(hint); an x86_64 template has kvm_capabilities, cpuid_modifiers and msr_modifiers")
        }
        if let capabilities = fields["kvm_capabilities"] {
            for (position, item) in try array(capabilities, "kvm_capabilities").enumerated() {
                try checkCapability(item, "kvm_capabilities[\(position)]")
            }
        }
        var template = CPUTemplate()
        if let modifiers = fields["cpuid_modifiers"] {
            for (position, item) in try array(modifiers, "cpuid_modifiers").enumerated() {
                template.cpuidModifiers.append(try cpuidModifier(item, "cpuid_modifiers[\(position)]"))
            }
        }
        if let modifiers = fields["msr_modifiers"] {
            for (position, item) in try array(modifiers, "msr_modifiers").enumerated() {
                template.msrModifiers.append(try msrModifier(item, "msr_modifiers[\(position)]"))
            }
        }
        return template
    }

    func cpuidModifier(_ value: JSONValue, _ path: String) throws(CPUTemplateError) -> CPUIDModifier {
        let fields = try object(value, path)
        let required = "each cpuid_modifiers entry needs leaf, subleaf, flags and modifiers"
        let leaf = try number(field("leaf", of: fields, path, required), "\(path).leaf")
        let subleaf = try number(field("subleaf", of: fields, path, required), "\(path).subleaf")
        let flags = try integer(field("flags", of: fields, path, required), "\(path).flags")
        var registers: [(register: CPUIDRegister, bitmap: RegisterBitmap)] = []
        let modifiers = try array(field("modifiers", of: fields, path, required), "\(path).modifiers")
        for (position, item) in modifiers.enumerated() {
            let itemPath = "\(path).modifiers[\(position)]"
            let itemFields = try object(item, itemPath)
            let needs = "each register modifier needs register and bitmap"
            let name = try string(field("register", of: itemFields, itemPath, needs), "\(itemPath).register")
            guard let register = CPUIDRegister(rawValue: name) else {
                throw failure("\(itemPath).register", "\"\(name)\" is not one of eax, ebx, ecx, edx")
            }
            let bitmap = try bitmap(field("bitmap", of: itemFields, itemPath, needs), "\(itemPath).bitmap", width: 32)
            registers.append((register, bitmap))
        }
        return CPUIDModifier(leaf: leaf, subleaf: subleaf, flags: flags, registers: registers)
    }

    func msrModifier(_ value: JSONValue, _ path: String) throws(CPUTemplateError) -> MSRModifier {
        let fields = try object(value, path)
        let required = "each msr_modifiers entry needs addr and bitmap"
        let address = try number(field("addr", of: fields, path, required), "\(path).addr")
        let bitmap = try bitmap(field("bitmap", of: fields, path, required), "\(path).bitmap", width: 64)
        return MSRModifier(address: address, bitmap: bitmap)
    }

    // MARK: Values

    func field(_ key: String, of fields: [String: JSONValue], _ path: String, _ required: String) throws(CPUTemplateError) -> JSONValue {
        guard let value = fields[key] else { throw failure("\(path).\(key)", "missing; \(required)") }
        return value
    }

    func object(_ value: JSONValue, _ path: String) throws(CPUTemplateError) -> [String: JSONValue] {
        guard case .object(let fields) = value else { throw failure(path, "expected an object, found \(value.kind)") }
        return fields
    }

    func array(_ value: JSONValue, _ path: String) throws(CPUTemplateError) -> [JSONValue] {
        guard case .array(let items) = value else { throw failure(path, "expected an array, found \(value.kind)") }
        return items
    }

    func string(_ value: JSONValue, _ path: String) throws(CPUTemplateError) -> String {
        guard case .string(let text) = value else { throw failure(path, "expected a string, found \(value.kind)") }
        return text
    }

    /// A KVM flags word: Firecracker reads it as a plain JSON integer.
    func integer(_ value: JSONValue, _ path: String) throws(CPUTemplateError) -> UInt32 {
        guard case .integer(let number) = value else {
            throw failure(path, "expected an integer, found \(value.kind)")
        }
        guard let result = UInt32(exactly: number) else { throw failure(path, "\(number) does not fit in 32 bits") }
        return result
    }

    /// A leaf, subleaf or MSR address: a string in hexadecimal (`"0x1"`) or
    /// binary (`"0b1"`), the two forms Firecracker accepts.
    func number(_ value: JSONValue, _ path: String) throws(CPUTemplateError) -> UInt32 {
        guard case .string(let text) = value else {
            throw failure(path, "expected a string such as \"0x1\", found \(value.kind)")
        }
        let radix: Int
        let name: String
        if text.hasPrefix("0x") { (radix, name) = (16, "hexadecimal") }
        else if text.hasPrefix("0b") { (radix, name) = (2, "binary") }
        else { throw failure(path, "\"\(text)\" has no 0x (hexadecimal) or 0b (binary) prefix") }
        let digits = text.dropFirst(2)
        guard !digits.isEmpty, digits.allSatisfy({ ($0.hexDigitValue ?? radix) < radix }) else {
            throw failure(path, "\"\(text)\" is not a \(name) number")
        }
        guard let result = UInt32(digits, radix: radix) else { throw failure(path, "\"\(text)\" does not fit in 32 bits") }
        return result
    }

    func bitmap(_ value: JSONValue, _ path: String, width: Int) throws(CPUTemplateError) -> RegisterBitmap {
        let text = try string(value, path)
        do {
            return try RegisterBitmap(parsing: text, width: width)
        } catch {
            throw failure(path, error.description)
        }
    }

    /// `"N"` asks for capability N, `"!N"` drops it from the checked list.
    func checkCapability(_ value: JSONValue, _ path: String) throws(CPUTemplateError) {
        let text = try string(value, path)
        let digits = text.hasPrefix("!") ? text.dropFirst() : Substring(text)
        guard UInt32(digits) != nil else {
            throw failure(path, "\"\(text)\" is not a KVM capability number, optionally preceded by !")
        }
    }
}
