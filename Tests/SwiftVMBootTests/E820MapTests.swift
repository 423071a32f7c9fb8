import Testing
@testable import SwiftVMBoot
import SwiftVMTestSupport

@Suite("E820Map")
struct E820MapTests {
    static let mib: UInt64 = 1 << 20
    static let gib: UInt64 = 1 << 30

    @Test("128 MiB: low RAM, reserved EBDA to 1 MiB, RAM to the end")
    func smallGuest() {
        #expect(E820Map.x86(ramSize: 128 * Self.mib) == [
            E820Entry(addr: 0, size: 0x9fc00, type: .ram),
            E820Entry(addr: 0x9fc00, size: 0x60400, type: .reserved),
            E820Entry(addr: 0x10_0000, size: 127 * Self.mib, type: .ram),
        ])
    }

    @Test("3 GiB: RAM ends exactly at the MMIO gap, nothing above 4 GiB")
    func threeGiB() {
        let map = E820Map.x86(ramSize: 3 * Self.gib)
        #expect(map.count == 3)
        #expect(map.last == E820Entry(addr: 0x10_0000, size: 3 * Self.gib - Self.mib, type: .ram))
    }

    @Test("4 GiB: the last GiB moves above 4 GiB")
    func fourGiB() {
        #expect(E820Map.x86(ramSize: 4 * Self.gib) == [
            E820Entry(addr: 0, size: 0x9fc00, type: .ram),
            E820Entry(addr: 0x9fc00, size: 0x60400, type: .reserved),
            E820Entry(addr: 0x10_0000, size: 0xc000_0000 - 0x10_0000, type: .ram),
            E820Entry(addr: 0x1_0000_0000, size: Self.gib, type: .ram),
        ])
    }

    @Test("RAM in the map equals the guest's RAM regions", arguments: [128 << 20, 3 << 30, 4 << 30, 6 << 30] as [UInt64])
    func ramMatchesRegions(size: UInt64) {
        let ram = E820Map.x86(ramSize: size).filter { $0.type == .ram }.reduce(0) { $0 + $1.size }
        // The reserved EBDA..1 MiB range is RAM the guest must not use.
        #expect(ram == size - (0x10_0000 - 0x9fc00))
        for entry in E820Map.x86(ramSize: size) where entry.type == .ram {
            let inside = X86Layout.ramRegions(size: size).contains {
                entry.addr >= $0.start.rawValue && entry.addr + entry.size <= $0.start.rawValue + $0.size
            }
            #expect(inside, "e820 RAM entry at \(entry.addr) lies outside guest RAM")
        }
    }
}
