
/// The value of one Kconfig option in a kernel `.config`.
public enum KernelConfigValue: Equatable, Sendable, CustomStringConvertible {
    /// `CONFIG_X=y`: built into the kernel image.
    case builtIn
    /// `CONFIG_X=m`: built as a loadable module.
    case module
    /// `# CONFIG_X is not set`, or no line for it at all.
    case notSet
    /// A string (`CONFIG_X="text"`, quotes removed) or a number (`CONFIG_X=0x1000000`).
    case text(String)

    public var description: String {
        switch self {
        case .builtIn: "y"
        case .module: "m"
        case .notSet: "not set"
        case .text(let value): value
        }
    }
}

/// A line of a `.config` that is not an option, a comment or blank.
public struct KernelConfigParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// 1-based line number.
    public var line: Int
    public var reason: String

    public var description: String { "line \(line): \(reason)" }
}

/// A parsed kernel `.config`, as written by Kconfig (`make olddefconfig`,
/// `/proc/config.gz`, the `config` file build-kernel.sh publishes).
public struct KernelConfig: Equatable, Sendable {
    /// Every option with a line, keyed by its full name (`CONFIG_VIRTIO_BLK`).
    public private(set) var options: [String: KernelConfigValue]

    public init(options: [String: KernelConfigValue] = [:]) { self.options = options }

    /// The option's value; options without a line are ``KernelConfigValue/notSet``,
    /// as Kconfig treats them. `name` may be given with or without `CONFIG_`.
    public subscript(name: String) -> KernelConfigValue {
        options[Self.fullName(name)] ?? .notSet
    }

    /// True for `=y`.
    public func isBuiltIn(_ name: String) -> Bool { self[name] == .builtIn }

    static func fullName(_ name: String) -> String { name.hasPrefix("CONFIG_") ? name : "CONFIG_" + name }

    /// Parses `.config` text. Accepts `CONFIG_X=y|m|n|"string"|number`,
    /// `# CONFIG_X is not set`, other `#` comments and blank lines; anything
    /// else is an error naming its line, so that a file that is not a kernel
    /// config at all (a binary, a fragment with typos) is not checked as if
    /// every option were off.
    public static func parse(_ text: String) throws(KernelConfigParseError) -> KernelConfig {
        var options: [String: KernelConfigValue] = [:]
        var sawOption = false
        var number = 0
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            number += 1
            let line = rawLine.last == "\r" ? rawLine.dropLast() : rawLine[...]
            let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
            if trimmed.isEmpty { continue }
            if trimmed.first == "#" {
                if let name = notSetName(trimmed) {
                    options[name] = .notSet
                    sawOption = true
                }
                continue
            }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw KernelConfigParseError(line: number, reason: "expected CONFIG_NAME=value, got \(quoted(trimmed))")
            }
            let name = String(trimmed[..<equals])
            guard isOptionName(name) else {
                throw KernelConfigParseError(line: number, reason: "\(quoted(name[...])) is not a CONFIG_ option name")
            }
            options[name] = try value(trimmed[trimmed.index(after: equals)...], line: number)
            sawOption = true
        }
        guard sawOption else {
            throw KernelConfigParseError(line: max(number, 1), reason: "no CONFIG_ options found; this is not a kernel .config")
        }
        return KernelConfig(options: options)
    }

    /// The name in `# CONFIG_X is not set`, or nil for any other comment.
    private static func notSetName(_ comment: Substring) -> String? {
        let prefix = "# ", suffix = " is not set"
        guard comment.hasPrefix(prefix), comment.hasSuffix(suffix) else { return nil }
        let name = String(comment.dropFirst(prefix.count).dropLast(suffix.count))
        return isOptionName(name) ? name : nil
    }

    private static func value(_ raw: Substring, line: Int) throws(KernelConfigParseError) -> KernelConfigValue {
        switch raw {
        case "y": return .builtIn
        case "m": return .module
        case "n": return .notSet
        default: break
        }
        if raw.first == "\"" {
            guard raw.count >= 2, raw.last == "\"" else {
                throw KernelConfigParseError(line: line, reason: "unterminated string value \(quoted(raw))")
            }
            // Kconfig escapes '"' and '\' inside strings with a backslash.
            var result = ""
            var escaped = false
            for character in raw.dropFirst().dropLast() {
                if escaped || character != "\\" {
                    result.append(character)
                    escaped = false
                } else {
                    escaped = true
                }
            }
            return .text(result)
        }
        let isHex = raw.hasPrefix("0x") || raw.hasPrefix("0X")
        let digits = isHex ? raw.dropFirst(2) : raw.hasPrefix("-") ? raw.dropFirst() : raw
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && (isHex ? $0.isHexDigit : $0.isNumber) }) else {
            throw KernelConfigParseError(line: line, reason: "\(quoted(raw)) is not y, m, n, a quoted string or a number")
        }
        return .text(String(raw))
    }

    private static func isOptionName(_ name: String) -> Bool {
        name.hasPrefix("CONFIG_") && name.count > 7
            && name.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x5f }
    }

    private static func quoted(_ text: Substring) -> String {
        let shown = text.count > 60 ? text.prefix(60) + "..." : text
        return "\"" + shown.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7f ? String($0) : "?" }.joined() + "\""
    }
}
