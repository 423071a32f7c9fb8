import Glibc
import Synchronization
import SwiftVMHost

public typealias SeccompFilters = SwiftVMHost.SeccompFilters
public typealias SeccompPolicy = SwiftVMHost.SeccompPolicy
public typealias SeccompThreadKind = SwiftVMHost.SeccompThreadKind
public typealias SeccompRule = SwiftVMHost.SeccompRule
public typealias SeccompCondition = SwiftVMHost.SeccompCondition
public typealias SeccompError = SwiftVMHost.SeccompError
public typealias SeccompIoctl = SwiftVMHost.SeccompIoctl

extension VMConfig {
    /// Whether the VM's own threads (its event loop and its vCPUs) run under
    /// seccomp filters, each thread loading its kind's filter as it starts
    /// (docs/security.md).
    public enum Seccomp: Sendable {
        /// `VMConfig.defaultSeccomp`: off unless the program turned it on. A
        /// library does not restrict a program's threads unless asked; the
        /// `swiftvm` command and its Firecracker mode ask.
        case processDefault
        /// No filters.
        case off
        /// These filters (`SeccompFilters.builtIn()`, or a policy of your own).
        case on(SeccompFilters)
    }

    private static let processSeccomp = Mutex<SeccompFilters?>(nil)

    /// The filters of VMs whose `seccomp` is `.processDefault`; nil (the
    /// initial value) means none. A front end that owns the process sets it
    /// once, before it builds VMs (Firecracker mode's VMs are built by its
    /// API, from a configuration that leaves `seccomp` alone).
    public static var defaultSeccomp: SeccompFilters? {
        get { processSeccomp.withLock { $0 } }
        set { processSeccomp.withLock { $0 = newValue } }
    }

    /// The filters this VM's threads load, if any.
    var seccompFilters: SeccompFilters? {
        switch seccomp {
        case .processDefault: VMConfig.defaultSeccomp
        case .off: nil
        case .on(let filters): filters
        }
    }
}

/// The seccomp filter file of `--seccomp-filter` (docs/security.md): one
/// object per thread kind, each with the system calls the kind may make and,
/// optionally, the only ioctl requests it may make.
///
/// ```json
/// {
///   "main":   { "syscalls": ["read", "write", ...], "ioctls": ["KVM_GET_REGS", "0x5401"] },
///   "events": { "syscalls": ["epoll_wait", { "name": "socket", "args": [{ "index": 0, "value": 1 }] }, ...] },
///   "vcpu":   { "syscalls": [...], "ioctls": ["KVM_RUN", ...] },
///   "api":    { "syscalls": [...], "ioctls": [...] }
/// }
/// ```
public enum SeccompFilterFile {
    /// Files larger than this are refused (the built-in lists take a few KiB).
    static let maxBytes = 1 << 20

    /// The filters `swiftvm run` and Firecracker mode use: none with
    /// `--no-seccomp`, the file's with `--seccomp-filter FILE`, else the
    /// built-in lists. A file that cannot be read or used is a `VMMError`
    /// whose message names the file, line, column and JSON path.
    ///
    /// Only `kinds`, the threads the front end starts, are compiled from the
    /// built-in lists; a file's lists are all compiled, so that a mistake in
    /// any of them shows whichever front end is given the file.
    public static func filters(
        disabled: Bool, file: String?, kinds: [SeccompThreadKind] = SeccompThreadKind.allCases
    ) throws(VMMError) -> SeccompFilters? {
        if disabled { return nil }
        guard let file else {
            #if SWIFTVM_SANITIZER
            // A sanitizer's runtime makes system calls of its own (its
            // report thread, shadow memory) that no list allows, so a build
            // for the sanitizers (scripts/test-tsan.sh) runs unfiltered
            // unless it is given a filter file.
            return nil
            #else
            do { return try SeccompFilters.builtIn(kinds: kinds) } catch {
                throw VMMError(.internalError, "the built-in seccomp filters: \(error)")
            }
            #endif
        }
        let policy = try load(path: file)
        do { return try SeccompFilters(policy) } catch {
            throw VMMError(.badInput, "the seccomp filter file \(file): \(error)")
        }
    }

    /// The one line a front end logs when it runs as root: swiftvm needs no
    /// privilege beyond /dev/kvm, and docs/security.md says how to set up
    /// the rest; nil for any other user.
    public static var rootNote: String? {
        guard geteuid() == 0 else { return nil }
        return "running as root, which swiftvm does not need: see docs/security.md for running unprivileged "
            + "(a user in the kvm group, a TAP created for that user, a vsock directory it can write)"
    }

    /// Reads and checks the filter file at `path`.
    public static func load(path: String) throws(VMMError) -> SeccompPolicy {
        let image = try FileImage(path: path, role: "seccomp filter file")
        let bytes = try image.readAll(limit: maxBytes)
        do { return try parse(bytes, source: path) } catch {
            throw VMMError(.badInput, "the seccomp filter file \(error.description)")
        }
    }

    /// The policy in the JSON `bytes`; `source` names them in errors.
    public static func parse(_ bytes: [UInt8], source: String) throws(JSONInputError) -> SeccompPolicy {
        let root = try JSONParser.parse(bytes, source: source)
        let reader = Reader(source: source)
        guard case .object(let object) = root.content else {
            throw reader.failure("", root, "expected an object with one member per thread kind "
                + "(\(kindNames)), found \(root.kindDescription)")
        }
        for member in object.members where SeccompThreadKind(rawValue: member.key) == nil {
            throw reader.failure(member.key, member.value, "unknown thread kind \"\(member.key)\"; the kinds are \(kindNames)")
        }
        var lists: [SeccompThreadKind: [SeccompRule]] = [:]
        for kind in SeccompThreadKind.allCases {
            guard let member = object[kind.rawValue] else {
                throw reader.failure("", root, "the thread kind \"\(kind.rawValue)\" is missing; a filter file lists every kind "
                    + "(\(kindNames)), each replacing the built-in list")
            }
            lists[kind] = try reader.list(member.value, path: kind.rawValue)
        }
        return SeccompPolicy(lists: lists)
    }

    static var kindNames: String { SeccompThreadKind.allCases.map(\.rawValue).joined(separator: ", ") }

    /// Errors that may stand for errno values by name.
    static let errnoNames: [(String, Int32)] = [
        ("EPERM", 1), ("ENOENT", 2), ("EIO", 5), ("EBADF", 9), ("EAGAIN", 11), ("EACCES", 13), ("EFAULT", 14),
        ("EINVAL", 22), ("ENOSYS", 38), ("EOPNOTSUPP", 95),
    ]

    private struct Reader {
        let source: String

        func failure(_ path: String, _ value: JSONValue, _ problem: String) -> JSONInputError {
            JSONInputError(source: source, path: path, line: value.position.line, column: value.position.column, problem: problem)
        }

        func list(_ value: JSONValue, path: String) throws(JSONInputError) -> [SeccompRule] {
            guard case .object(let object) = value.content else {
                throw failure(path, value, "expected an object with \"syscalls\" (and optionally \"ioctls\"), found \(value.kindDescription)")
            }
            for member in object.members where member.key != "syscalls" && member.key != "ioctls" {
                throw failure("\(path).\(member.key)", member.value, "unknown field; a thread kind has \"syscalls\" and \"ioctls\"")
            }
            guard let syscalls = object["syscalls"] else {
                throw failure(path, value, "\"syscalls\" is missing: the list of system calls this kind of thread may make")
            }
            var rules: [SeccompRule] = []
            for (index, entry) in try array(syscalls.value, path: "\(path).syscalls").enumerated() {
                rules.append(try rule(entry, path: "\(path).syscalls[\(index)]"))
            }
            if let ioctls = object["ioctls"] {
                if rules.contains(where: { $0.syscall == "ioctl" && $0.conditions.isEmpty && $0.errno == nil }) {
                    throw failure("\(path).ioctls", ioctls.value, "\"ioctl\" is in \"syscalls\" with any request; list it "
                        + "there (any request) or give \"ioctls\" (only these requests), not both")
                }
                for (index, entry) in try array(ioctls.value, path: "\(path).ioctls").enumerated() {
                    let request = try ioctl(entry, path: "\(path).ioctls[\(index)]")
                    rules.append(SeccompRule("ioctl", [.equals(1, request)]))
                }
            }
            for needed in ["write", "exit_group"] where !rules.contains(where: { $0.syscall == needed && $0.errno == nil }) {
                throw failure("\(path).syscalls", syscalls.value, "\(needed) must be allowed: a thread that makes a call "
                    + "its filter forbids reports it with write and ends the process with exit_group")
            }
            return rules
        }

        func array(_ value: JSONValue, path: String) throws(JSONInputError) -> [JSONValue] {
            guard case .array(let items) = value.content else {
                throw failure(path, value, "expected an array, found \(value.kindDescription)")
            }
            return items
        }

        func syscall(_ name: String, _ value: JSONValue, path: String) throws(JSONInputError) -> String {
            guard SeccompFilters.syscallNumber(name) != nil else {
                throw failure(path, value, "\"\(name)\" is not a system call on this machine (names as in "
                    + "/usr/include/x86_64-linux-gnu/asm/unistd_64.h, e.g. \"newfstatat\", \"pread64\")")
            }
            return name
        }

        func rule(_ value: JSONValue, path: String) throws(JSONInputError) -> SeccompRule {
            switch value.content {
            case .string(let name):
                return SeccompRule(try syscall(name, value, path: path))
            case .object(let object):
                for member in object.members where !["name", "args", "errno"].contains(member.key) {
                    throw failure("\(path).\(member.key)", member.value, "unknown field; a rule has \"name\", \"args\" and \"errno\"")
                }
                guard let nameMember = object["name"], case .string(let name) = nameMember.value.content else {
                    throw failure("\(path).name", object["name"]?.value ?? value, "expected the system call's name as a string")
                }
                var rule = SeccompRule(try syscall(name, nameMember.value, path: "\(path).name"))
                if let args = object["args"] {
                    var seen = Set<Int>()
                    for (index, entry) in try array(args.value, path: "\(path).args").enumerated() {
                        let condition = try self.condition(entry, path: "\(path).args[\(index)]")
                        guard seen.insert(condition.index).inserted else {
                            throw failure("\(path).args[\(index)].index", entry, "argument \(condition.index) is checked twice in one rule; "
                                + "give alternatives as separate rules")
                        }
                        rule.conditions.append(condition)
                    }
                }
                if let error = object["errno"] {
                    rule.errno = try errno(error.value, path: "\(path).errno")
                }
                return rule
            default:
                throw failure(path, value, "expected a system call's name, or an object with \"name\" and \"args\", "
                    + "found \(value.kindDescription)")
            }
        }

        func condition(_ value: JSONValue, path: String) throws(JSONInputError) -> SeccompCondition {
            guard case .object(let object) = value.content else {
                throw failure(path, value, "expected an object with \"index\", \"value\" and optionally \"mask\"")
            }
            for member in object.members where !["index", "value", "mask"].contains(member.key) {
                throw failure("\(path).\(member.key)", member.value, "unknown field; an argument check has \"index\", \"value\" and \"mask\"")
            }
            guard let indexMember = object["index"] else { throw failure(path, value, "\"index\" is missing: the argument, 0 to 5") }
            let index = try number(indexMember.value, path: "\(path).index")
            guard index <= 5 else { throw failure("\(path).index", indexMember.value, "expected an argument index from 0 to 5, found \(index)") }
            guard let valueMember = object["value"] else { throw failure(path, value, "\"value\" is missing") }
            let expected = try number(valueMember.value, path: "\(path).value")
            let mask = try object["mask"].map { (member) throws(JSONInputError) in try number(member.value, path: "\(path).mask") } ?? .max
            guard expected & ~mask == 0 else {
                throw failure("\(path).value", valueMember.value, "the value has bits outside the mask, so the check could never hold")
            }
            return SeccompCondition(index: Int(index), mask: mask, value: expected)
        }

        /// A non-negative integer, as a JSON number or a "0x..." string.
        func number(_ value: JSONValue, path: String) throws(JSONInputError) -> UInt64 {
            switch value.content {
            case .number(let number):
                if let parsed = number.integer(as: UInt64.self) { return parsed }
            case .string(let text):
                let lower = text.lowercased()
                if lower.hasPrefix("0x"), let parsed = UInt64(lower.dropFirst(2), radix: 16) { return parsed }
                if let parsed = UInt64(text) { return parsed }
            default:
                break
            }
            throw failure(path, value, "expected a non-negative 64-bit integer (a number, or a string such as \"0x4\"), "
                + "found \(value.kindDescription)")
        }

        func ioctl(_ value: JSONValue, path: String) throws(JSONInputError) -> UInt64 {
            if case .string(let name) = value.content, let known = SeccompIoctl.named(name) { return known.request }
            let request: UInt64
            do { request = try number(value, path: path) } catch {
                throw failure(path, value, "expected an ioctl request: a number, a \"0x...\" string or one of the names "
                    + "swiftvm uses (\(SeccompIoctl.known.map(\.name).joined(separator: ", ")))")
            }
            guard request <= 0xffff_ffff else {
                throw failure(path, value, "an ioctl request is 32 bits; \(request) is larger")
            }
            return request
        }

        func errno(_ value: JSONValue, path: String) throws(JSONInputError) -> Int32 {
            if case .string(let name) = value.content, let known = SeccompFilterFile.errnoNames.first(where: { $0.0 == name }) {
                return known.1
            }
            if case .number(let number) = value.content, let parsed = number.integer(as: Int32.self), (1...4095).contains(parsed) {
                return parsed
            }
            throw failure(path, value, "expected an errno from 1 to 4095, or one of "
                + SeccompFilterFile.errnoNames.map(\.0).joined(separator: ", "))
        }
    }

    /// `policy` as a filter file (the built-in lists printed this way are a
    /// starting point for a file of one's own), one rule per line.
    public static func render(_ policy: SeccompPolicy) -> String {
        var text = "{\n"
        for (kindIndex, kind) in SeccompThreadKind.allCases.enumerated() {
            let rules = policy.lists[kind] ?? []
            let ioctls = rules.compactMap { rule -> UInt64? in
                guard rule.syscall == "ioctl", rule.errno == nil, rule.conditions.count == 1,
                    let only = rule.conditions.first, only.index == 1, only.mask == 0xffff_ffff
                else { return nil }
                return only.value
            }
            let others = rules.filter { rule in
                !(rule.syscall == "ioctl" && rule.errno == nil && rule.conditions.count == 1
                    && rule.conditions[0].index == 1 && rule.conditions[0].mask == 0xffff_ffff)
            }
            text += "  \"\(kind.rawValue)\": {\n    \"syscalls\": [\n"
            text += others.map { "      " + entry($0) }.joined(separator: ",\n")
            text += "\n    ]"
            if !ioctls.isEmpty {
                text += ",\n    \"ioctls\": [\n"
                text += ioctls.map { request in
                    let name = SeccompIoctl.known.first { $0.request == request }?.name
                    return "      \"" + (name ?? "0x" + String(request, radix: 16)) + "\""
                }.joined(separator: ",\n")
                text += "\n    ]"
            }
            text += "\n  }" + (kindIndex == SeccompThreadKind.allCases.count - 1 ? "\n" : ",\n")
        }
        return text + "}\n"
    }

    private static func entry(_ rule: SeccompRule) -> String {
        guard !rule.conditions.isEmpty || rule.errno != nil else { return "\"\(rule.syscall)\"" }
        var fields = ["\"name\": \"\(rule.syscall)\""]
        if !rule.conditions.isEmpty {
            let args = rule.conditions.map { condition in
                var parts = ["\"index\": \(condition.index)", "\"value\": \(hex(condition.value))"]
                if condition.mask != .max { parts.append("\"mask\": \(hex(condition.mask))") }
                return "{ " + parts.joined(separator: ", ") + " }"
            }
            fields.append("\"args\": [" + args.joined(separator: ", ") + "]")
        }
        if let error = rule.errno {
            fields.append("\"errno\": " + (errnoNames.first { $0.1 == error }.map { "\"\($0.0)\"" } ?? "\(error)"))
        }
        return "{ " + fields.joined(separator: ", ") + " }"
    }

    private static func hex(_ value: UInt64) -> String {
        value < 10 ? "\(value)" : "\"0x\(String(value, radix: 16))\""
    }
}
