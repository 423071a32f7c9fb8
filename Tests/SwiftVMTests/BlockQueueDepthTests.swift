import Foundation
import Testing
@testable import SwiftVM

/// The test guest's block workload with many requests in flight on one
/// queue (blkbench, `testguest.bench_depth=32`), on both io engines; the
/// host checks the image byte for byte.
@Suite("virtio-blk with 32 requests in flight", .serialized, .enabled(if: SwiftVMProcess.kvmAvailable, "needs a usable /dev/kvm"))
struct BlockQueueDepthTests {
    /// Each 64 KiB request of a blkbench write stores bytes 0, 1, ... 255 repeated.
    static let block = (0..<65536).map { UInt8($0 & 0xff) }

    static func bench(_ kind: String, engine: String, image: String) throws -> SwiftVMProcess.Outcome {
        let guest = try #require(SwiftVMProcess.testGuest, "the test guest did not build")
        return try SwiftVMProcess.run([
            "run", "--kernel", guest, "--no-rng", "--no-preflight", "--no-console-input",
            "--drive", "id=bench,path=\(image),engine=\(engine)",
            "--cmdline", "console=ttyS0 testguest.mode=blkbench testguest.bench=\(kind) testguest.bench_frame=65536 "
                + "testguest.bench_depth=32 testguest.bench_mib=2",
        ])
    }

    @Test("sequential writes then reads of 64 KiB, 32 at a time, land on the disk byte for byte", arguments: ["sync", "async"])
    func deepQueue(engine: String) throws {
        // 4 MiB of 0xee: the workload writes the first 2 MiB and leaves the rest.
        let image = try SwiftVMProcess.temporaryFile([UInt8](repeating: 0xee, count: 4 << 20), name: "depth-\(engine)")
        defer { unlink(image) }
        let write = try Self.bench("seqwrite", engine: engine, image: image)
        #expect(write.status == 0, "stderr: \(write.stderr)")
        #expect(write.stdout.contains("BENCH seqwrite 32 requests, 2097152 bytes, 0 failed, 65536-byte requests, depth 32"), "\(write.stdout)")
        let contents = try [UInt8](Data(contentsOf: URL(fileURLWithPath: image)))
        #expect(contents.count == 4 << 20)
        #expect(Array(contents[0..<(2 << 20)]) == Array([[UInt8]](repeating: Self.block, count: 32).joined()))
        #expect(contents[(2 << 20)...].allSatisfy { $0 == 0xee })

        let read = try Self.bench("randread", engine: engine, image: image)
        #expect(read.status == 0, "stderr: \(read.stderr)")
        #expect(read.stdout.contains("BENCH randread 32 requests, 2097152 bytes, 0 failed, 65536-byte requests, depth 32"), "\(read.stdout)")
    }
}
