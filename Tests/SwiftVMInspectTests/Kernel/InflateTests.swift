import Foundation
import Testing
@testable import SwiftVMInspect
import SwiftVMTestSupport

/// Gzip output compressed by the real `gzip`, decompressed by ``Inflate``.
@Suite("Inflate", .enabled(if: gzipTool != nil, "needs gzip"))
struct InflateTests {
    /// `gzip -c -n [level]` of `bytes`.
    static func gzip(_ bytes: [UInt8], level: String = "-6") throws -> [UInt8] {
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("swiftvm-inflate-\(UUID().uuidString)")
        try Data(bytes).write(to: input)
        defer { try? FileManager.default.removeItem(at: input) }
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: try #require(gzipTool))
        process.arguments = ["-c", "-n", level, input.path]
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return Array(data)
    }

    /// BTYPE of the first deflate block (bits 1-2 of the byte after a 10-byte header).
    static func firstBlockType(_ gzip: [UInt8]) -> Int { Int(gzip[10] >> 1) & 3 }

    /// Text with enough repetition and variety for gzip to pick a dynamic Huffman block.
    static let configText: [UInt8] = Array((0..<3000).map { "CONFIG_OPTION_\($0 * 7919 % 1000)=\($0 % 3 == 0 ? "y" : "m")\n" }.joined().utf8)

    /// Bytes that do not compress, so gzip stores them.
    static let noise: [UInt8] = {
        var state: UInt32 = 0x1234_5678
        return (0..<200_000).map { _ in
            state ^= state << 13
            state ^= state >> 17
            state ^= state << 5
            return UInt8(truncatingIfNeeded: state)
        }
    }()

    @Test("stored blocks (incompressible data, over several 64 KiB blocks)")
    func stored() throws {
        let compressed = try Self.gzip(Self.noise)
        #expect(Self.firstBlockType(compressed) == 0)
        #expect(try Inflate.gunzip(compressed) == Self.noise)
    }

    @Test("a fixed-Huffman block (short text)")
    func fixed() throws {
        let text = Array("CONFIG_VIRTIO_BLK=y\nCONFIG_VIRTIO_BLK=y\n# CONFIG_MODULES is not set\n".utf8)
        let compressed = try Self.gzip(text)
        #expect(Self.firstBlockType(compressed) == 1)
        #expect(try Inflate.gunzip(compressed) == text)
    }

    @Test("dynamic-Huffman blocks (a long config), at several levels", arguments: ["-1", "-6", "-9"])
    func dynamic(level: String) throws {
        let compressed = try Self.gzip(Self.configText, level: level)
        #expect(Self.firstBlockType(compressed) == 2)
        #expect(try Inflate.gunzip(compressed) == Self.configText)
    }

    @Test("an empty file, and trailing bytes after the member")
    func edges() throws {
        #expect(try Inflate.gunzip(try Self.gzip([])) == [])
        let followed = try Self.gzip(Array("abc".utf8)) + Array("IKCFG_ED".utf8)
        #expect(try Inflate.gunzip(followed) == Array("abc".utf8))
    }

    @Test("a header with a file name (gzip without -n)")
    func fileName() throws {
        var compressed = try Self.gzip(Array("hello".utf8))
        compressed[3] |= 0x08  // FNAME
        compressed.insert(contentsOf: Array("name.txt".utf8) + [0], at: 10)
        #expect(try Inflate.gunzip(compressed) == Array("hello".utf8))
    }

    @Test("corrupt input is an error, never a crash")
    func corrupt() throws {
        let compressed = try Self.gzip(Self.configText)
        #expect(throws: InflateError.notGzip) { try Inflate.gunzip(Array("plain text here".utf8)) }
        #expect(throws: InflateError.truncated) { try Inflate.gunzip(Array(compressed[..<(compressed.count / 2)])) }
        var flipped = compressed
        flipped[flipped.count - 12] ^= 0x55  // inside the deflate data, near its end
        #expect(throws: InflateError.self) { try Inflate.gunzip(flipped) }
        var badCRC = compressed
        badCRC[badCRC.count - 8] ^= 1
        #expect(throws: InflateError.checksumMismatch) { try Inflate.gunzip(badCRC) }
        // Every truncation and every single-byte corruption of the header and first block.
        for cut in 0..<min(compressed.count, 300) { _ = try? Inflate.gunzip(Array(compressed[..<cut])) }
        for index in 0..<min(compressed.count, 300) {
            var damaged = compressed
            damaged[index] ^= 0xff
            _ = try? Inflate.gunzip(damaged)
        }
    }

    @Test("hand-made deflate streams with specific faults")
    func crafted() {
        // BFINAL=1, BTYPE=3.
        #expect(throws: InflateError.reservedBlockType) { try Inflate.inflate([0x07]) }
        // A stored block whose NLEN is not the complement of LEN.
        #expect(throws: InflateError.storedLengthMismatch) { try Inflate.inflate([0x01, 0x05, 0x00, 0x00, 0x00]) }
        // Fixed block: length code 257 (0000001), distance code 0 (00000): a match with nothing written.
        var bits = BitWriter()
        bits.write(1, 1)
        bits.write(1, 2)
        bits.writeCode(0b000_0001, 7)
        bits.writeCode(0, 5)
        #expect(throws: InflateError.distanceTooFar(distance: 1, available: 0)) { try Inflate.inflate(bits.bytes) }
    }

    @Test("the output limit stops a large expansion")
    func limit() throws {
        let zeros = try Self.gzip([UInt8](repeating: 0, count: 1 << 20))
        #expect(zeros.count < 2000)
        #expect(throws: InflateError.outputLimitExceeded(limit: 4096)) { try Inflate.gunzip(zeros, limit: 4096) }
        #expect(try Inflate.gunzip(zeros, limit: 1 << 20).count == 1 << 20)
        #expect(throws: InflateError.outputLimitExceeded(limit: 100)) { try Inflate.gunzip(try Self.gzip(Self.noise), limit: 100) }
    }
}

let gzipTool: String? = ["/usr/bin/gzip", "/bin/gzip"].first { FileManager.default.isExecutableFile(atPath: $0) }

/// Writes a deflate bit stream: values least significant bit first, Huffman codes most significant bit first.
struct BitWriter {
    var bytes: [UInt8] = []
    private var used = 0

    mutating func write(_ value: Int, _ count: Int) {
        for bit in 0..<count { push((value >> bit) & 1) }
    }

    mutating func writeCode(_ code: Int, _ length: Int) {
        for bit in (0..<length).reversed() { push((code >> bit) & 1) }
    }

    private mutating func push(_ bit: Int) {
        if used % 8 == 0 { bytes.append(0) }
        bytes[bytes.count - 1] |= UInt8(bit << (used % 8))
        used += 1
    }
}
