import Glibc
import SwiftVMMemory
import Testing

/// `GuestMemory.discard`: the host takes back exactly the pages named, the
/// guest finds zeros there, and a range that is misaligned or not in RAM is
/// refused without touching anything.
@Suite("GuestMemory discard")
struct GuestMemoryDiscardTests {
    static let page = GuestMemory.hostPageSize

    /// Whether each host page of `[address, address + pages * page)` is resident (mincore(2)).
    static func resident(_ memory: GuestMemory, at address: GuestAddress, pages: Int) throws -> [Bool] {
        let bytes = try memory.checkedBytes(at: address, count: pages * page)
        var vector = [UInt8](repeating: 0, count: pages)
        try #require(mincore(bytes.baseAddress, bytes.count, &vector) == 0, "mincore: \(String(cString: strerror(errno)))")
        return vector.map { $0 & 1 == 1 }
    }

    @Test("the named pages go back to the host and read as zero; their neighbours keep their data")
    func discardsExactlyTheRange() throws {
        let memory = try GuestMemory(regions: [(GuestAddress(0), 4 << 20)])
        let first = GuestAddress(1 << 20)
        try memory.write([UInt8](repeating: 0xa5, count: 4 * Self.page), at: first)
        #expect(try Self.resident(memory, at: first, pages: 4) == [true, true, true, true])
        let before = memory.residentBytes()

        try memory.discard(at: GuestAddress(first.rawValue + UInt64(Self.page)), length: UInt64(2 * Self.page))

        #expect(try Self.resident(memory, at: first, pages: 4) == [true, false, false, true])
        #expect(memory.residentBytes() == before - UInt64(2 * Self.page))
        #expect(try memory.read(at: GuestAddress(first.rawValue + UInt64(Self.page)), count: 2 * Self.page).allSatisfy { $0 == 0 })
        #expect(try memory.read(at: first, count: Self.page).allSatisfy { $0 == 0xa5 })
        #expect(try memory.read(at: GuestAddress(first.rawValue + UInt64(3 * Self.page)), count: Self.page).allSatisfy { $0 == 0xa5 })
    }

    @Test("a discarded page can be written again and holds the new data")
    func reusable() throws {
        let memory = try GuestMemory(regions: [(GuestAddress(0), 1 << 20)])
        try memory.store(UInt64(0x1122_3344_5566_7788), at: GuestAddress(0x8000))
        try memory.discard(at: GuestAddress(0x8000), length: UInt64(Self.page))
        #expect(try memory.load(UInt64.self, at: GuestAddress(0x8000)) == 0)
        try memory.store(UInt64(42), at: GuestAddress(0x8000))
        #expect(try memory.load(UInt64.self, at: GuestAddress(0x8000)) == 42)
    }

    @Test("misaligned starts and lengths are refused, and nothing is discarded")
    func misaligned() throws {
        let memory = try GuestMemory(regions: [(GuestAddress(0), 1 << 20)])
        try memory.write([UInt8](repeating: 7, count: 2 * Self.page), at: GuestAddress(0x10000))
        let page = UInt64(Self.page)
        #expect(throws: GuestMemoryDiscardError.misaligned(address: GuestAddress(0x10001), length: page, pageSize: Self.page)) {
            try memory.discard(at: GuestAddress(0x10001), length: page)
        }
        #expect(throws: GuestMemoryDiscardError.misaligned(address: GuestAddress(0x10000), length: page + 1, pageSize: Self.page)) {
            try memory.discard(at: GuestAddress(0x10000), length: page + 1)
        }
        #expect(try memory.read(at: GuestAddress(0x10000), count: 2 * Self.page).allSatisfy { $0 == 7 })
    }

    @Test("ranges outside RAM, across the hole between regions, or overflowing are refused")
    func outsideRAM() throws {
        let page = UInt64(Self.page)
        let memory = try GuestMemory(regions: [(GuestAddress(0), 1 << 20), (GuestAddress(4 << 30), 1 << 20)])
        #expect(throws: GuestMemoryDiscardError.outsideRAM(address: GuestAddress(1 << 20), length: page)) {
            try memory.discard(at: GuestAddress(1 << 20), length: page)
        }
        let lastLow = GuestAddress((1 << 20) - page)
        #expect(throws: GuestMemoryDiscardError.outsideRAM(address: lastLow, length: 2 * page)) {
            try memory.discard(at: lastLow, length: 2 * page)
        }
        #expect(throws: GuestMemoryDiscardError.self) { try memory.discard(at: GuestAddress(page), length: UInt64.max - page + 1) }
        #expect(throws: GuestMemoryDiscardError.self) { try memory.discard(at: GuestAddress(UInt64.max - page + 1), length: page) }
        // The region above 4 GiB is RAM like any other.
        let high = GuestAddress((4 << 30) + 0x10000)
        try memory.store(UInt32(0xdead_beef), at: high)
        try memory.discard(at: high, length: page)
        #expect(try memory.load(UInt32.self, at: high) == 0)
    }

    @Test("an empty range is accepted and does nothing")
    func empty() throws {
        let memory = try GuestMemory(regions: [(GuestAddress(0), 1 << 20)])
        try memory.store(UInt8(9), at: GuestAddress(0x3000))
        try memory.discard(at: GuestAddress(0x3000), length: 0)
        #expect(try memory.load(UInt8.self, at: GuestAddress(0x3000)) == 9)
    }

    @Test("errors say what was wrong and the rule")
    func messages() {
        let misaligned = GuestMemoryDiscardError.misaligned(address: GuestAddress(0x1001), length: 4096, pageSize: 4096)
        #expect(misaligned.description.contains("multiples of the host page size (4096 bytes)"))
        let outside = GuestMemoryDiscardError.outsideRAM(address: GuestAddress(0x1000), length: 4096)
        #expect(outside.description.contains("not inside one guest RAM region"))
    }
}
