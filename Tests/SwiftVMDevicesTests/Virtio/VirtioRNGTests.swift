import SwiftVMDevices
import Testing
import SwiftVMMemory

@Suite("virtio-rng")
struct VirtioRNGTests {
    func start(entropy: @escaping VirtioRNG.EntropySource = patternEntropy) throws -> (MMIODriver, MockDriverQueue) {
        let driver = try MMIODriver(device: VirtioRNG(entropy: entropy))
        let queue = try MockDriverQueue(memory: driver.memory, size: 16)
        #expect(driver.read(MMIODriver.Register.deviceID) == 4)
        #expect(driver.initialize(queues: [queue]) == 0x0f, "ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK")
        return (driver, queue)
    }

    @Test func fillsEveryWritableBuffer() throws {
        let (driver, queue) = try start()
        let a = try queue.allocate(16)
        let b = try queue.allocate(32)
        try queue.makeAvailable(try queue.addChain([.writable(a, 16), .writable(b, 32)]))
        driver.kick()
        #expect(try queue.takeUsed() == [.init(id: 0, length: 48)])
        #expect(try driver.memory.read(at: a, count: 16) == (1...16).map { UInt8($0) })
        #expect(try driver.memory.read(at: b, count: 32) == (1...32).map { UInt8($0) })
        #expect(driver.interrupt.count == 1)
    }

    @Test func servesAtMost64KiBPerRequest() throws {
        let (driver, queue) = try start()
        let buffer = try queue.allocate(100_000, fill: 0xee)
        try queue.makeAvailable(try queue.addChain([.writable(buffer, 100_000)]))
        driver.kick()
        #expect(try queue.takeUsed() == [.init(id: 0, length: 65536)])
        #expect(try driver.memory.read(at: GuestAddress(buffer.rawValue + 65536), count: 16) == [UInt8](repeating: 0xee, count: 16))
    }

    @Test func readableBuffersAreSkipped() throws {
        let (driver, queue) = try start()
        let input = try queue.allocate(8, fill: 0x11)
        let output = try queue.allocate(8)
        try queue.makeAvailable(try queue.addChain([.readable(input, 8), .writable(output, 8)]))
        driver.kick()
        #expect(try queue.takeUsed() == [.init(id: 0, length: 8)])
        #expect(try driver.memory.read(at: input, count: 8) == [UInt8](repeating: 0x11, count: 8))
    }

    @Test func aFailingEntropySourceWritesNothing() throws {
        let (driver, queue) = try start(entropy: { _ in false })
        try queue.makeAvailable(try queue.addChain([.writable(try queue.allocate(8), 8)]))
        driver.kick()
        #expect(try queue.takeUsed() == [.init(id: 0, length: 0)])
    }

    @Test("one pass serves at most requestsPerPass requests and says when more may wait")
    func passesAreBounded() throws {
        let driver = try MMIODriver(device: VirtioRNG(entropy: patternEntropy))
        let queue = try MockDriverQueue(memory: driver.memory, size: 256)
        #expect(driver.initialize(queues: [queue]) == 0x0f)
        for _ in 0..<10 { try queue.makeAvailable(try queue.addChain([.writable(try queue.allocate(8), 8)])) }
        #expect(driver.transport.processQueue(0) == false, "10 requests fit in one pass")
        #expect(try queue.takeUsed().count == 10)

        for _ in 0..<VirtioActivation.requestsPerPass {
            try queue.makeAvailable(try queue.addChain([.writable(try queue.allocate(8), 8)]))
        }
        #expect(driver.transport.processQueue(0) == true, "a full pass yields so the event loop can serve other work")
        #expect(try queue.takeUsed().count == VirtioActivation.requestsPerPass)
        #expect(driver.transport.processQueue(0) == false)
    }

    @Test func hostEntropyIsNotConstant() throws {
        var first = [UInt8](repeating: 0, count: 37)
        var second = first
        #expect(first.withUnsafeMutableBytes { VirtioRNG.hostEntropy($0) })
        #expect(second.withUnsafeMutableBytes { VirtioRNG.hostEntropy($0) })
        #expect(first != second, "two 37-byte draws from getrandom(2) differ")
    }

    @Test func hasNoConfigSpace() throws {
        let (driver, _) = try start()
        #expect(driver.read(0x100) == 0)
    }
}
