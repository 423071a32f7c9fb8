import Foundation
import Testing
import SwiftVMTestSupport

/// The device tree compiler, used as an independent decoder of the blobs
/// swiftvm writes.
enum DTC {
    static let path: String? = ["/usr/bin/dtc", "/usr/local/bin/dtc"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
    static var isAvailable: Bool { path != nil }
    static let missingReason: Comment = "dtc is not installed (apt-get install device-tree-compiler); the device tree cannot be checked by an external decoder"

    struct Decompiled {
        var status: Int32
        var source: String
        var diagnostics: String
    }

    /// Runs `dtc -I dtb -O dts` on `blob`.
    static func decompile(_ blob: [UInt8]) throws -> Decompiled {
        guard let path else { throw CocoaError(.fileNoSuchFile) }
        let file = FileManager.default.temporaryDirectory
            .appendingPathComponent("swiftvm-fdt-\(UUID().uuidString).dtb")
        try Data(blob).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["-I", "dtb", "-O", "dts", "-o", "-", file.path]
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // Read both pipes before waiting, so a large output cannot block dtc.
        let source = output.fileHandleForReading.readDataToEndOfFile()
        let diagnostics = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Decompiled(
            status: process.terminationStatus,
            source: String(decoding: source, as: UTF8.self),
            diagnostics: String(decoding: diagnostics, as: UTF8.self))
    }
}
