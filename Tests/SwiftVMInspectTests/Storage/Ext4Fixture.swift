import Foundation
import Testing
import SwiftVMTestSupport

/// Builds ext2/3/4 images the way a user would: a directory tree on the host,
/// then `mke2fs -d`. Tests then damage the bytes where they need to.
enum Ext4Fixture {
    static let mke2fs: String? = tool("mke2fs")
    static let e2fsck: String? = tool("e2fsck")
    static let debugfs: String? = tool("debugfs")

    static func tool(_ name: String) -> String? {
        ["/sbin/\(name)", "/usr/sbin/\(name)", "/usr/bin/\(name)"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    enum Node {
        case file([UInt8], mode: Int = 0o755)
        case directory
        case symlink(String)

        static func text(_ text: String, mode: Int = 0o755) -> Node { .file(Array(text.utf8), mode: mode) }
    }

    /// The directories a bootable tree has besides its programs.
    static let mountPoints: [String: Node] = ["dev": .directory, "proc": .directory, "sys": .directory]

    /// A 64-byte ELF64 header for `machine` (62 x86-64, 183 AArch64), static,
    /// followed by filler so the file looks like a program.
    static func elf(machine: UInt16 = 62, interpreter: String? = nil) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 64)
        bytes.replaceSubrange(0..<8, with: [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0])
        func put16(_ value: UInt16, _ at: Int) { bytes[at] = UInt8(value & 0xff); bytes[at + 1] = UInt8(value >> 8) }
        func put64(_ value: UInt64, _ at: Int, in array: inout [UInt8]) {
            for index in 0..<8 { array[at + index] = UInt8((value >> (8 * UInt64(index))) & 0xff) }
        }
        put16(2, 16)  // ET_EXEC
        put16(machine, 18)
        bytes[20] = 1  // EV_CURRENT
        put16(64, 52)  // e_ehsize
        put16(56, 54)  // e_phentsize
        if let interpreter {
            put64(64, 0x20, in: &bytes)  // e_phoff
            put16(1, 56)  // e_phnum
            var header = [UInt8](repeating: 0, count: 56)
            header[0] = 3  // PT_INTERP
            let path = Array(interpreter.utf8) + [0]
            put64(120, 8, in: &header)
            put64(UInt64(path.count), 32, in: &header)
            bytes += header + path
        }
        return bytes + [UInt8](repeating: 0x90, count: 4096)
    }

    /// Writes `tree` under a fresh directory and runs mke2fs on it; returns the image.
    static func image(
        _ tree: [String: Node], type: String = "ext4", blockSize: Int = 1024, megabytes: Int = 8,
        indexDirectories: Bool = false, inodes: Int? = nil
    ) throws -> [UInt8] {
        let tool = try #require(mke2fs)
        let root = NSTemporaryDirectory() + "swiftvm-ext4-\(UUID().uuidString)"
        let imagePath = root + ".img"
        defer {
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: imagePath)
        }
        let files = FileManager.default
        try files.createDirectory(atPath: root, withIntermediateDirectories: true)
        // Parents first, so "a/b" exists before "a/b/c".
        for (path, node) in tree.sorted(by: { $0.key < $1.key }) {
            let full = root + "/" + path
            try files.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            switch node {
            case .directory:
                try files.createDirectory(atPath: full, withIntermediateDirectories: true)
            case .file(let bytes, let mode):
                try Data(bytes).write(to: URL(fileURLWithPath: full))
                try files.setAttributes([.posixPermissions: mode], ofItemAtPath: full)
            case .symlink(let target):
                try files.createSymbolicLink(atPath: full, withDestinationPath: target)
            }
        }
        let inodeCount = inodes.map { ["-N", "\($0)"] } ?? []
        try run(tool, ["-q", "-F", "-t", type, "-b", "\(blockSize)"] + inodeCount + ["-d", root, imagePath, "\(megabytes)M"])
        if indexDirectories {
            // e2fsck -D rebuilds directories; those over one block become hashed (htree).
            let status = try run(try #require(e2fsck), ["-fyD", imagePath], allowFailure: true)
            try #require(status <= 1, "e2fsck -fyD failed with \(status)")
        }
        return try [UInt8](Data(contentsOf: URL(fileURLWithPath: imagePath)))
    }

    /// Where debugfs says inode `path` lies: (block, offset in block).
    static func inodeLocation(of path: String, in image: [UInt8]) throws -> (block: Int, offset: Int) {
        let imagePath = NSTemporaryDirectory() + "swiftvm-ext4-\(UUID().uuidString).img"
        defer { try? FileManager.default.removeItem(atPath: imagePath) }
        try Data(image).write(to: URL(fileURLWithPath: imagePath))
        let output = try capture(try #require(debugfs), ["-R", "imap \(path)", imagePath])
        // "located at block 176, offset 0x0000"
        let line = try #require(output.split(separator: "\n").first { $0.contains("located at block") })
        let words = line.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" })
        let block = try #require(words.firstIndex(of: "block").flatMap { Int(words[$0 + 1]) })
        let offset = try #require(words.firstIndex(of: "offset").flatMap { Int(words[$0 + 1].dropFirst(2), radix: 16) })
        return (block, offset)
    }

    @discardableResult
    static func run(_ tool: String, _ arguments: [String], allowFailure: Bool = false) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        if !allowFailure { try #require(process.terminationStatus == 0, "\(tool) \(arguments) failed") }
        return process.terminationStatus
    }

    static func capture(_ tool: String, _ arguments: [String]) throws -> String {
        let process = Process()
        let pipe = Pipe()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
