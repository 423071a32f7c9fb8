import Testing
import SwiftVMMemory
@testable import SwiftVMBoot
import SwiftVMTestSupport

@Suite("InitrdPlacement")
struct InitrdPlacementTests {
    static let kernelEnd = GuestAddress(0x300_0000)

    @Test("goes at the top of RAM, page-aligned")
    func topOfRAM() throws {
        let memory = try makeMemory(size: 128 << 20)
        let address = try InitrdPlacement.address(initrdSize: 0x1234, kernelEnd: Self.kernelEnd, memory: memory)
        #expect(address == GuestAddress(0x800_0000 - 0x2000))
        #expect(address.rawValue % 4096 == 0)
    }

    @Test("stays below the MMIO gap when RAM continues above 4 GiB")
    func belowGap() throws {
        let memory = try makeMemory(size: 5 << 30)
        let address = try InitrdPlacement.address(initrdSize: 16 << 20, kernelEnd: Self.kernelEnd, memory: memory)
        #expect(address == GuestAddress(0xc000_0000 - (16 << 20)))
    }

    @Test("exactly the free space fits")
    func exactFit() throws {
        let memory = try makeMemory(size: 128 << 20)
        let free: UInt64 = 0x800_0000 - 0x300_0000
        #expect(try InitrdPlacement.address(initrdSize: free, kernelEnd: Self.kernelEnd, memory: memory) == Self.kernelEnd)
    }

    @Test("too large: says how big, how much is free, and to add --memory")
    func tooLarge() throws {
        let memory = try makeMemory(size: 128 << 20)
        let error = #expect(throws: InitrdError.self) {
            try InitrdPlacement.address(initrdSize: 200 << 20, kernelEnd: GuestAddress(0x260_0001), memory: memory)
        }
        // Free: 128 MiB minus the kernel's end rounded up to a page (38 MiB + 4 KiB).
        #expect(error == .doesNotFit(initrdSize: 200 << 20, free: (128 << 20) - 0x260_1000))
        #expect(error?.description == "the initrd is 200 MiB but only 89.9 MiB of RAM are free above the kernel below 3 GiB; give the guest more --memory")
    }

    @Test("an empty initrd is refused")
    func empty() throws {
        let memory = try makeMemory()
        #expect(throws: InitrdError.empty) {
            try InitrdPlacement.address(initrdSize: 0, kernelEnd: Self.kernelEnd, memory: memory)
        }
    }
}
