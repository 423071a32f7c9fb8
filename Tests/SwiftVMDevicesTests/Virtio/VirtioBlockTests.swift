import SwiftVMDevices
import Testing
import SwiftVMMemory

/// A block device on the transport, initialized by the mock driver, over an
/// in-memory disk whose byte `i` is `i % 251`.
struct BlockRig {
    let driver: MMIODriver
    let queue: MockDriverQueue
    let backend: InMemoryBlockBackend

    static func diskPattern(_ count: Int, from offset: Int = 0) -> [UInt8] {
        (offset..<(offset + count)).map { UInt8($0 % 251) }
    }

    init(config: BlockDriveConfig = BlockDriveConfig(id: "rootfs"), sectors: Int = 64, features: UInt64? = nil, queueSize: UInt16 = 16) throws {
        backend = InMemoryBlockBackend(bytes: Self.diskPattern(sectors * 512))
        driver = try MMIODriver(device: try VirtioBlock(config: config, backend: backend))
        queue = try MockDriverQueue(memory: driver.memory, size: queueSize)
        let status = driver.initialize(features: features, queues: [queue])
        precondition(status & MMIODriver.Status.driverOK != 0, "block device did not start")
    }

    static func header(type: UInt32, sector: UInt64) -> [UInt8] {
        withUnsafeBytes(of: type.littleEndian) { Array($0) } + [0, 0, 0, 0]
            + withUnsafeBytes(of: sector.littleEndian) { Array($0) }
    }

    /// A request laid out the usual way: header, data, status byte, each in
    /// its own descriptor. Returns the status byte's address and the data buffer.
    @discardableResult
    func submit(type: UInt32, sector: UInt64 = 0, write data: [UInt8]? = nil, readLength: Int? = nil, indirect: Bool = false) throws -> (status: GuestAddress, data: GuestAddress?) {
        let header = try queue.allocate(bytes: Self.header(type: type, sector: sector))
        let status = try queue.allocate(1, fill: 0xff)
        var buffers: [MockDriverQueue.Buffer] = [.readable(header, 16)]
        var dataAddress: GuestAddress?
        if let data {
            let address = try queue.allocate(bytes: data)
            buffers.append(.readable(address, data.count))
            dataAddress = address
        }
        if let readLength {
            let address = try queue.allocate(readLength)
            buffers.append(.writable(address, readLength))
            dataAddress = address
        }
        buffers.append(.writable(status, 1))
        let head = indirect ? try queue.addIndirectChain(buffers) : try queue.addChain(buffers)
        try queue.makeAvailable(head)
        return (status, dataAddress)
    }

    func statusByte(_ address: GuestAddress) throws -> UInt8 {
        try driver.memory.load(UInt8.self, at: address)
    }
}

@Suite("virtio-blk")
struct VirtioBlockTests {
    typealias T = VirtioBlock.RequestType
    typealias St = VirtioBlock.RequestStatus

    @Test func configSpaceReportsCapacitySegmentsAndBlockSize() throws {
        let rig = try BlockRig(sectors: 100)
        #expect(rig.driver.read(MMIODriver.Register.deviceID) == 2)
        let low = rig.driver.read(0x100)
        let high = rig.driver.read(0x104)
        #expect(UInt64(low) | UInt64(high) << 32 == 100)
        #expect(rig.driver.read(0x10c) == 254, "seg_max")
        #expect(rig.driver.read(0x114) == 512, "blk_size")
        #expect(rig.driver.read(0x200) == 0, "beyond the config space")
    }

    @Test func configSpaceBytesMatchTheSpecLayout() throws {
        let rig = try BlockRig(sectors: 0x1_0203)
        let bytes = (0..<24).map { offset in
            var byte: UInt8 = 0xaa
            withUnsafeMutableBytes(of: &byte) { rig.driver.transport.read(offset: 0x100 + UInt64(offset), into: $0) }
            return byte
        }
        // struct virtio_blk_config (§5.2.4), little-endian:
        //   capacity   u64  0x10203 sectors
        //   size_max   u32  0 (VIRTIO_BLK_F_SIZE_MAX not offered)
        //   seg_max    u32  254
        //   geometry   u32  0 (VIRTIO_BLK_F_GEOMETRY not offered)
        //   blk_size   u32  512
        #expect(bytes == [
            0x03, 0x02, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0xfe, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00,
            0x00, 0x02, 0x00, 0x00,
        ])
    }

    @Test func offersFlushOnlyForWritebackDrives() throws {
        let unsafe = try BlockRig(config: .init(id: "a"))
        let writeback = try BlockRig(config: .init(id: "b", cacheWriteback: true))
        #expect(unsafe.driver.deviceFeatures & VirtioBlock.Feature.flush == 0)
        #expect(writeback.driver.deviceFeatures & VirtioBlock.Feature.flush != 0)
        for rig in [unsafe, writeback] {
            let features = rig.driver.deviceFeatures
            #expect(features & VirtioBlock.Feature.segMax != 0)
            #expect(features & VirtioBlock.Feature.blockSize != 0)
            #expect(features & VirtioBlock.Feature.readOnly == 0)
            #expect(features & VirtioFeature.eventIndex != 0)
            #expect(features & VirtioFeature.version1 != 0)
        }
    }

    @Test func readCopiesSectorsIntoGuestMemory() throws {
        let rig = try BlockRig()
        let (status, data) = try rig.submit(type: T.read, sector: 3, readLength: 1024)
        rig.driver.kick()
        #expect(try rig.statusByte(status) == St.ok)
        #expect(try rig.driver.memory.read(at: #require(data), count: 1024) == BlockRig.diskPattern(1024, from: 3 * 512))
        #expect(try rig.queue.takeUsed() == [.init(id: 0, length: 1025)])
        #expect(rig.driver.interrupt.count == 1)
    }

    @Test func readScattersIntoSeveralBuffers() throws {
        let rig = try BlockRig()
        let header = try rig.queue.allocate(bytes: BlockRig.header(type: T.read, sector: 1))
        let first = try rig.queue.allocate(100)
        // The last buffer holds the end of the data and the status byte.
        let second = try rig.queue.allocate(413)
        try rig.queue.makeAvailable(try rig.queue.addChain([.readable(header, 16), .writable(first, 100), .writable(second, 413)]))
        rig.driver.kick()
        let expected = BlockRig.diskPattern(512, from: 512)
        #expect(try rig.driver.memory.read(at: first, count: 100) == Array(expected[0..<100]))
        #expect(try rig.driver.memory.read(at: second, count: 412) == Array(expected[100...]))
        #expect(try rig.statusByte(GuestAddress(second.rawValue + 412)) == St.ok)
        #expect(try rig.queue.takeUsed() == [.init(id: 0, length: 513)])
    }

    @Test func writeStoresGuestBytesOnTheDisk() throws {
        let rig = try BlockRig()
        let payload = (0..<1024).map { UInt8(255 - $0 % 256) }
        let (status, _) = try rig.submit(type: T.write, sector: 10, write: payload)
        rig.driver.kick()
        #expect(try rig.statusByte(status) == St.ok)
        #expect(Array(rig.backend.bytes[(10 * 512)..<(12 * 512)]) == payload)
        #expect(Array(rig.backend.bytes[0..<(10 * 512)]) == BlockRig.diskPattern(10 * 512), "nothing else changed")
        #expect(try rig.queue.takeUsed() == [.init(id: 0, length: 1)])
    }

    @Test func headerAndDataMayShareADescriptor() throws {
        let rig = try BlockRig()
        let payload = [UInt8](repeating: 0x5a, count: 512)
        let request = try rig.queue.allocate(bytes: BlockRig.header(type: T.write, sector: 2) + payload)
        let status = try rig.queue.allocate(1, fill: 0xff)
        try rig.queue.makeAvailable(try rig.queue.addChain([.readable(request, 16 + 512), .writable(status, 1)]))
        rig.driver.kick()
        #expect(try rig.statusByte(status) == St.ok)
        #expect(Array(rig.backend.bytes[1024..<1536]) == payload)
    }

    @Test func requestsThroughAnIndirectTable() throws {
        let rig = try BlockRig()
        let (status, data) = try rig.submit(type: T.read, sector: 0, readLength: 512, indirect: true)
        rig.driver.kick()
        #expect(try rig.statusByte(status) == St.ok)
        #expect(try rig.driver.memory.read(at: #require(data), count: 512) == BlockRig.diskPattern(512))
    }

    @Test func flushReachesTheBackendOnWritebackDrives() throws {
        let rig = try BlockRig(config: .init(id: "wb", cacheWriteback: true))
        let (status, _) = try rig.submit(type: T.flush)
        rig.driver.kick()
        #expect(try rig.statusByte(status) == St.ok)
        #expect(rig.backend.flushCount == 1)
    }

    @Test func flushWithoutTheFeatureIsUnsupported() throws {
        let rig = try BlockRig(config: .init(id: "unsafe"))
        let (status, _) = try rig.submit(type: T.flush)
        rig.driver.kick()
        #expect(try rig.statusByte(status) == St.unsupported)
        #expect(rig.backend.flushCount == 0)
    }

    @Test(arguments: ["rootfs", "", "exactly-twenty-bytes"])
    func getIDReturnsTheDriveIDPaddedWithNULs(_ id: String) throws {
        let rig = try BlockRig(config: .init(id: id))
        let (status, data) = try rig.submit(type: T.getID, readLength: 20)
        rig.driver.kick()
        #expect(try rig.statusByte(status) == St.ok)
        let expected = Array(id.utf8) + [UInt8](repeating: 0, count: 20 - id.utf8.count)
        #expect(try rig.driver.memory.read(at: #require(data), count: 20) == expected)
        #expect(try rig.queue.takeUsed() == [.init(id: 0, length: 21)])
    }

    @Test func driveIDsLongerThan20BytesAreRejected() {
        #expect(throws: VirtioBlock.ConfigError.idTooLong("twenty-one-bytes-long")) {
            try VirtioBlock(config: .init(id: "twenty-one-bytes-long"), backend: InMemoryBlockBackend(size: 512))
        }
    }

    @Test func readOnlyDrivesOfferROAndRefuseWrites() throws {
        let rig = try BlockRig(config: .init(id: "ro", readOnly: true))
        #expect(rig.driver.deviceFeatures & VirtioBlock.Feature.readOnly != 0)
        let (status, _) = try rig.submit(type: T.write, sector: 0, write: [UInt8](repeating: 0, count: 512))
        rig.driver.kick()
        #expect(try rig.statusByte(status) == St.ioError)
        #expect(rig.backend.bytes == BlockRig.diskPattern(64 * 512))
        // Reads still work.
        let (readStatus, _) = try rig.submit(type: T.read, sector: 0, readLength: 512)
        rig.driver.kick()
        #expect(try rig.statusByte(readStatus) == St.ok)
    }

    @Test(arguments: [
        (0, 64, 512),                  // read of the first sector past the end
        (0, 63, 1024),                 // read straddling the end
        (1, 63, 1024),                 // write straddling the end
        (0, UInt64.max, 512),          // sector * 512 overflows
        (1, UInt64.max / 512 + 1, 512),
    ] as [(UInt32, UInt64, Int)])
    func outOfRangeSectorsAreIOErrors(_ type: UInt32, _ sector: UInt64, _ length: Int) throws {
        let rig = try BlockRig(sectors: 64)
        let (status, _) = type == T.read
            ? try rig.submit(type: type, sector: sector, readLength: length)
            : try rig.submit(type: type, sector: sector, write: [UInt8](repeating: 7, count: length))
        rig.driver.kick()
        #expect(try rig.statusByte(status) == St.ioError)
        #expect(rig.backend.bytes == BlockRig.diskPattern(64 * 512))
    }

    @Test func transfersThatAreNotWholeSectorsAreIOErrors() throws {
        let rig = try BlockRig()
        let (status, _) = try rig.submit(type: T.read, sector: 0, readLength: 100)
        rig.driver.kick()
        #expect(try rig.statusByte(status) == St.ioError)
    }

    @Test func unknownRequestTypesAreUnsupported() throws {
        let rig = try BlockRig()
        let (status, _) = try rig.submit(type: 11, sector: 0)
        rig.driver.kick()
        #expect(try rig.statusByte(status) == St.unsupported)
    }

    @Test func aShortHeaderIsAnIOError() throws {
        let rig = try BlockRig()
        let header = try rig.queue.allocate(bytes: [0, 0, 0, 0, 0, 0, 0, 0])
        let status = try rig.queue.allocate(1, fill: 0xff)
        try rig.queue.makeAvailable(try rig.queue.addChain([.readable(header, 8), .writable(status, 1)]))
        rig.driver.kick()
        #expect(try rig.statusByte(status) == St.ioError)
        #expect(try rig.queue.takeUsed() == [.init(id: 0, length: 1)])
    }

    @Test func aRequestWithoutAStatusByteIsReturnedUnanswered() throws {
        let rig = try BlockRig()
        let header = try rig.queue.allocate(bytes: BlockRig.header(type: T.write, sector: 0))
        let data = try rig.queue.allocate(512, fill: 0x11)
        try rig.queue.makeAvailable(try rig.queue.addChain([.readable(header, 16), .readable(data, 512)]))
        rig.driver.kick()
        #expect(try rig.queue.takeUsed() == [.init(id: 0, length: 0)])
        #expect(rig.backend.bytes == BlockRig.diskPattern(64 * 512), "the write was not performed")
    }

    @Test func servesEveryRequestOfABatch() throws {
        let rig = try BlockRig()
        let statuses = try (0..<5).map { try rig.submit(type: T.read, sector: UInt64($0), readLength: 512).status }
        rig.driver.kick()
        for status in statuses { #expect(try rig.statusByte(status) == St.ok) }
        #expect(try rig.queue.takeUsed().map(\.length) == [513, 513, 513, 513, 513])
        #expect(rig.driver.interrupt.count == 1, "one interrupt for the batch")
    }

    @Test func backendFailuresAreIOErrors() throws {
        struct Broken: BlockBackend {
            struct Failure: Error {}
            var size: UInt64 { 4096 }
            func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws { throw Failure() }
            func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws { throw Failure() }
            func flush() throws { throw Failure() }
        }
        let driver = try MMIODriver(device: try VirtioBlock(config: .init(id: "x", cacheWriteback: true), backend: Broken()))
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        driver.initialize(queues: [queue])
        let rig = (driver: driver, queue: queue)
        var statuses: [GuestAddress] = []
        for type in [T.read, T.write, T.flush] {
            let header = try queue.allocate(bytes: BlockRig.header(type: type, sector: 0))
            let data = try queue.allocate(512)
            let status = try queue.allocate(1, fill: 0xff)
            let middle: MockDriverQueue.Buffer = type == T.read ? .writable(data, 512) : .readable(data, 512)
            try queue.makeAvailable(try queue.addChain([.readable(header, 16), middle, .writable(status, 1)]))
            statuses.append(status)
        }
        rig.driver.kick()
        for status in statuses { #expect(try driver.memory.load(UInt8.self, at: status) == St.ioError) }
    }
}
