import Foundation
import Glibc
import Testing
@testable import SwiftVM
import SwiftVMAPI

/// Every exit status the code can produce is in docs/exit-codes.md, and every
/// status the page lists is one the code produces.
@Suite("Exit statuses: the code and docs/exit-codes.md agree")
struct ExitStatusTests {
    static let root = SwiftVMProcess.packageRoot

    static func read(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    /// A status cell of the page: one status, a range ("80–85"), or 128+N.
    enum Documented: Hashable {
        case status(Int32)
        case signal

        static func parse(_ cell: String) -> [Documented] {
            if cell == "128+N" { return [.signal] }
            let bounds = cell.split(whereSeparator: { $0 == "–" || $0 == "-" }).compactMap { Int32($0) }
            if bounds.count == 2 { return (bounds[0]...bounds[1]).map { .status($0) } }
            return Int32(cell).map { [.status($0)] } ?? []
        }
    }

    /// The first cell of each row of the first table after `heading` (nil: from the top of the page).
    static func table(after heading: String?, in page: String) throws -> [String: [Documented]] {
        var text = Substring(page)
        if let heading {
            let start = try #require(page.range(of: "\n## \(heading)\n"), "no \"## \(heading)\" in docs/exit-codes.md")
            text = page[start.upperBound...]
        }
        var rows: [String: [Documented]] = [:]
        var inTable = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            guard line.hasPrefix("|") else {
                if inTable { break }
                continue
            }
            inTable = true
            let cell = line.split(separator: "|").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            if cell == "status" || cell.hasPrefix("---") { continue }
            let parsed = Documented.parse(cell)
            #expect(!parsed.isEmpty, "cannot read the status cell \"\(cell)\"")
            rows[cell] = parsed
        }
        return rows
    }

    static func documented(_ table: [String: [Documented]]) -> Set<Documented> { Set(table.values.joined()) }

    /// Every `ExitStatus` constant, by name. `declaredStatuses` checks this list against the source.
    static let exitStatuses: [String: Int32] = [
        "success": ExitStatus.success, "vmmRuntimeError": ExitStatus.vmmRuntimeError, "usage": ExitStatus.usage,
        "badInput": ExitStatus.badInput, "missingInput": ExitStatus.missingInput, "kvmUnavailable": ExitStatus.kvmUnavailable,
        "internalError": ExitStatus.internalError, "hostResource": ExitStatus.hostResource, "undecided": ExitStatus.undecided,
        "guestTripleFault": ExitStatus.guestTripleFault, "kvmInternalError": ExitStatus.kvmInternalError,
        "kvmFailEntry": ExitStatus.kvmFailEntry, "guestCrash": ExitStatus.guestCrash, "userQuit": ExitStatus.userQuit,
        "stoppedByHost": ExitStatus.stoppedByHost, "badSyscall": ExitStatus.badSyscall,
    ]

    /// One value of each `VMMError.Kind`.
    static let errorKinds: [VMMError.Kind] = [
        .usage, .missingFile(path: "/f"), .badKernel(path: "/f"), .badInitrd(path: "/f"), .badDrive(id: "d"),
        .driveBusy(id: "d"), .badCPUTemplate(path: "/f"), .badInput, .kvmUnavailable, .hostResource, .internalError,
        .missingInput,
    ]

    /// Each kind's place in `errorKinds`. The switch has no default, so a new
    /// kind stops this file from compiling until it is listed above.
    static func position(_ kind: VMMError.Kind) -> Int {
        switch kind {
        case .usage: 0
        case .missingFile: 1
        case .badKernel: 2
        case .badInitrd: 3
        case .badDrive: 4
        case .driveBusy: 5
        case .badCPUTemplate: 6
        case .badInput: 7
        case .kvmUnavailable: 8
        case .hostResource: 9
        case .internalError: 10
        case .missingInput: 11
        }
    }

    /// One value of each `VMExitReason`.
    static let exitReasons: [VMExitReason] = [
        .reset, .powerOff, .tripleFault(vcpu: 0, state: nil), .kvmInternalError(vcpu: 0, suberror: 1, data: [], state: nil),
        .failEntry(vcpu: 0, reason: 0), .guestCrash(vcpu: 0), .signal(15), .userQuit, .stopped("x"), .vmmError("x"),
    ]

    static func position(_ reason: VMExitReason) -> Int {
        switch reason {
        case .reset: 0
        case .powerOff: 1
        case .tripleFault: 2
        case .kvmInternalError: 3
        case .failEntry: 4
        case .guestCrash: 5
        case .signal: 6
        case .userQuit: 7
        case .stopped: 8
        case .vmmError: 9
        }
    }

    static func documented(_ reason: VMExitReason) -> Documented {
        if case .signal = reason { return .signal }
        return .status(reason.exitCode)
    }

    @Test("the list of ExitStatus constants is the one the source declares")
    func declaredStatuses() throws {
        let source = try Self.read("Sources/SwiftVM/VMM/VMExitReason.swift")
        let body = try #require(source.components(separatedBy: "public enum ExitStatus {").dropFirst().first)
        let pattern = try NSRegularExpression(pattern: #"public static let (\w+): Int32 = (\d+)"#)
        var declared: [String: Int32] = [:]
        for match in pattern.matches(in: body, range: NSRange(body.startIndex..., in: body)) {
            let name = String(body[Range(match.range(at: 1), in: body)!])
            declared[name] = Int32(body[Range(match.range(at: 2), in: body)!])
        }
        #expect(declared == Self.exitStatuses)
        #expect(Set(Self.exitStatuses.values).count == Self.exitStatuses.count, "two constants share a status")
    }

    @Test("every ExitStatus is in the table of docs/exit-codes.md, and every row of it is an ExitStatus")
    func statusesAreDocumented() throws {
        let table = try Self.table(after: nil, in: try Self.read("docs/exit-codes.md"))
        let documented = Self.documented(table)
        for (name, status) in Self.exitStatuses {
            #expect(documented.contains(.status(status)), "ExitStatus.\(name) (\(status)) is not in docs/exit-codes.md")
        }
        let declared = Set(Self.exitStatuses.values.map(Documented.status)).union([.signal])
        #expect(documented.subtracting(declared).isEmpty, "documented but not an ExitStatus: \(documented.subtracting(declared))")
    }

    @Test("every error kind and every exit reason maps to a documented status")
    func mappingsAreDocumented() throws {
        #expect(Set(Self.errorKinds.map(Self.position)) == Set(0..<Self.errorKinds.count), "errorKinds lists each kind once")
        #expect(Set(Self.exitReasons.map(Self.position)) == Set(0..<Self.exitReasons.count), "exitReasons lists each case once")
        let documented = Self.documented(try Self.table(after: nil, in: try Self.read("docs/exit-codes.md")))
        for kind in Self.errorKinds {
            #expect(documented.contains(.status(VMMError(kind, "x").exitCode)), "\(kind)")
        }
        for reason in Self.exitReasons {
            #expect(documented.contains(Self.documented(reason)), "\(reason)")
        }
        #expect(VMExitReason.signal(2).exitCode == 130 && VMExitReason.signal(15).exitCode == 143)
    }

    @Test("every documented status is produced by the code")
    func documentedStatusesAreProduced() throws {
        // What the library's errors and exit reasons produce, and what the commands throw themselves.
        var produced = Set(Self.errorKinds.map { Documented.status(VMMError($0, "x").exitCode) })
        produced.formUnion(Self.exitReasons.map(Self.documented))
        // The SIGSYS handler of the seccomp filters exits with it (docs/security.md).
        #expect(ExitStatus.badSyscall == SeccompFilters.violationStatus)
        produced.insert(.status(SeccompFilters.violationStatus))
        let commands = try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("Sources/swiftvm").path)
        for file in commands where file.hasSuffix(".swift") {
            let text = try Self.read("Sources/swiftvm/\(file)")
            for (name, status) in Self.exitStatuses where text.contains("ExitCode(ExitStatus.\(name))") {
                produced.insert(.status(status))
            }
        }
        let documented = Self.documented(try Self.table(after: nil, in: try Self.read("docs/exit-codes.md")))
        #expect(documented.subtracting(produced).isEmpty, "documented but never produced: \(documented.subtracting(produced))")
    }

    @Test("Firecracker mode: its own statuses and the guest's are in the page's Firecracker table, and nothing else")
    func firecrackerTable() throws {
        let table = try Self.table(after: "Firecracker mode", in: try Self.read("docs/exit-codes.md"))
        let documented = Self.documented(table)
        let own: [Int32] = [
            FirecrackerProcess.ExitCode.ok, FirecrackerProcess.ExitCode.genericError,
            FirecrackerProcess.ExitCode.badConfiguration, FirecrackerProcess.ExitCode.argumentParsing,
            FirecrackerProcess.ExitCode.badSyscall,
        ]
        // FirecrackerProcess.run returns its own codes, or a stopped VM's reason.
        var produced = Set(own.map(Documented.status))
        produced.formUnion(Self.exitReasons.map(Self.documented))
        #expect(produced.subtracting(documented).isEmpty, "produced but not documented: \(produced.subtracting(documented))")
        #expect(documented.subtracting(produced).isEmpty, "documented but never produced: \(documented.subtracting(produced))")
    }

    @Test("an input that cannot be opened is 66 (66 for permissions too), a host limit 71")
    func openFailures() {
        for errno in [ENOENT, EACCES, EPERM, EROFS, ELOOP, ENOTDIR, ENAMETOOLONG, EISDIR] {
            let kind = InputFile.openFailureKind(errno: errno, path: "/f")
            #expect(VMMError(kind, "x").exitCode == 66, "errno \(errno)")
        }
        for errno in [EMFILE, ENFILE, ENOMEM] {
            #expect(VMMError(InputFile.openFailureKind(errno: errno, path: "/f"), "x").exitCode == 71, "errno \(errno)")
        }
    }
}
