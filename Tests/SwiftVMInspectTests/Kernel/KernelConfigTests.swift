import Testing
@testable import SwiftVMInspect
import SwiftVMTestSupport

@Suite("KernelConfig parsing")
struct KernelConfigTests {
    @Test("every kind of line Kconfig writes")
    func values() throws {
        let config = try KernelConfig.parse("""
            #
            # Automatically generated file; DO NOT EDIT.
            #
            CONFIG_VIRTIO_BLK=y
            CONFIG_VIRTIO_NET=m
            # CONFIG_MODULES is not set
            CONFIG_CMDLINE="console=ttyS0 \\"quoted\\""
            CONFIG_PHYSICAL_START=0x1000000
            CONFIG_NR_CPUS=64
            CONFIG_FRAME_WARN=-1
            CONFIG_EXPERT=n\r

            """)
        #expect(config["CONFIG_VIRTIO_BLK"] == .builtIn)
        #expect(config["VIRTIO_NET"] == .module)
        #expect(config["MODULES"] == .notSet)
        #expect(config["CMDLINE"] == .text("console=ttyS0 \"quoted\""))
        #expect(config["PHYSICAL_START"] == .text("0x1000000"))
        #expect(config["NR_CPUS"] == .text("64"))
        #expect(config["FRAME_WARN"] == .text("-1"))
        #expect(config["EXPERT"] == .notSet)
        #expect(config["NEVER_MENTIONED"] == .notSet)
    }

    @Test("garbage is an error naming its line", arguments: [
        ("CONFIG_A=y\nhello world\n", 2),
        ("CONFIG_A=y\nCONFIG_B=maybe\n", 2),
        ("CONFIG_A=\"unterminated\n", 1),
        ("NOT_CONFIG=y\n", 1),
        ("CONFIG_=y\n", 1),
        ("CONFIG_A=0xZZ\n", 1),
    ])
    func garbage(text: String, line: Int) {
        #expect(throws: KernelConfigParseError.self) { try KernelConfig.parse(text) }
        do { _ = try KernelConfig.parse(text) } catch { #expect(error.line == line, "\(error)") }
    }

    @Test("a file with no options at all is not a config")
    func noOptions() {
        for text in ["", "\n\n", "# just a comment\n"] {
            #expect(throws: KernelConfigParseError.self) { try KernelConfig.parse(text) }
        }
    }
}
