import Testing
import SwiftVM

@Suite("Naming the instructions an emulating KVM cannot run")
struct EmulationHintTests {
    @Test(
        "each known instruction is named, with and without prefixes",
        arguments: [
            ([0xcc, 0x90], "int3"),
            ([0xcd, 0x80], "int 0x80"),
            ([0x9b, 0xc3], "fwait"),
            ([0xf3, 0x48, 0x0f, 0xb8, 0xc7], "popcnt"),  // popcnt rax, rdi
            ([0xf3, 0x0f, 0xb8, 0xc1], "popcnt"),  // popcnt eax, ecx
            ([0x0f, 0x01, 0xca], "clac"),
            ([0x0f, 0x01, 0xcb], "stac"),
            ([0x0f, 0x01, 0xd0], "xgetbv"),
            ([0x0f, 0x01, 0xd1], "xsetbv"),
            ([0x0f, 0x01, 0xc1], "vmcall"),
            ([0x0f, 0x01, 0xd9], "vmmcall"),
            ([0xf0, 0x48, 0x0f, 0xc7, 0x0e], "cmpxchg16b"),  // lock cmpxchg16b [rsi]
            ([0x48, 0x0f, 0xae, 0x27], "xsave"),  // xsave64 [rdi]
            ([0x48, 0x0f, 0xae, 0x2f], "xrstor"),  // xrstor64 [rdi]
            ([0x48, 0x0f, 0xae, 0x37], "xsaveopt"),
            ([0x48, 0x0f, 0xc7, 0x27], "xsavec"),
            ([0x48, 0x0f, 0xc7, 0x2f], "xsaves"),
            ([0x48, 0x0f, 0xc7, 0x1f], "xrstors"),
        ] as [([UInt8], String)])
    func known(bytes: [UInt8], mnemonic: String) {
        #expect(EmulationHint.decode(bytes)?.mnemonic == mnemonic)
    }

    @Test(
        "ordinary instructions and look-alikes are not named",
        arguments: [
            [0x90],  // nop
            [0x0f, 0xb8, 0xc1],  // jmpe without F3: not popcnt
            [0x0f, 0xc7, 0x0e],  // cmpxchg8b: runs
            [0x0f, 0xae, 0xe8],  // lfence (register form of 0F AE /5)
            [0x0f, 0xae, 0xf0],  // mfence (register form of 0F AE /6)
            [0x0f, 0x01, 0xf8],  // swapgs
            [0xf3],  // a prefix alone
            [0x0f],
            [],
        ] as [[UInt8]])
    func unknown(bytes: [UInt8]) {
        #expect(EmulationHint.decode(bytes) == nil)
    }

    @Test("each fix names what to change")
    func fixes() throws {
        #expect(try #require(EmulationHint.decode([0xcc])).fix.contains("--test-kernel"))
        #expect(try #require(EmulationHint.decode([0x9b])).fix.contains("fpu__drop"))
        #expect(try #require(EmulationHint.decode([0xf3, 0x0f, 0xb8, 0xc1])).fix.contains("clearcpuid=popcnt"))
        #expect(try #require(EmulationHint.decode([0x0f, 0x01, 0xca])).fix.contains("clearcpuid=smap"))
        #expect(try #require(EmulationHint.decode([0x48, 0x0f, 0xc7, 0x0e])).fix.contains("no-cx16-no-xsave.json"))
        #expect(try #require(EmulationHint.decode([0x0f, 0xae, 0x27])).fix.contains("noxsave"))
        #expect(try #require(EmulationHint.decode([0x0f, 0x01, 0xc1])).fix.contains("initcall_blacklist=ptp_kvm_init"))
    }
}
