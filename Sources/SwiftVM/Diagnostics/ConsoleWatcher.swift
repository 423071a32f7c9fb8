import SwiftVMDevices
import Synchronization
import SwiftVMBoot

/// Passes the guest console through to its real destination while watching
/// it for the ways a boot fails silently: a kernel that finds no init, no root
/// file system, or panics; or a guest that prints nothing at all.
public final class ConsoleWatcher: ByteSink {
    /// A failure the console showed, with what it means and what to do.
    public struct Finding: Sendable, Equatable {
        public var signature: String
        public var explanation: String
    }

    private struct State {
        var line: [UInt8] = []
        var bytesSeen = 0
        var findings: [Finding] = []
        var lastLines: [String] = []
    }

    private let destination: any ByteSink
    private let state = Mutex(State())
    private static let maxLine = 512

    public init(forwardingTo destination: any ByteSink) {
        self.destination = destination
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        destination.write(bytes)
        state.withLock { state in
            state.bytesSeen += bytes.count
            for byte in bytes {
                if byte == UInt8(ascii: "\n") {
                    let text = String(decoding: state.line, as: UTF8.self).filter { $0 != "\r" }
                    state.line.removeAll(keepingCapacity: true)
                    state.lastLines.append(text)
                    if state.lastLines.count > 5 { state.lastLines.removeFirst() }
                    if let finding = ConsoleWatcher.diagnose(text), !state.findings.contains(finding) {
                        state.findings.append(finding)
                    }
                } else if state.line.count < ConsoleWatcher.maxLine {
                    state.line.append(byte)
                }
            }
        }
    }

    /// Bytes the guest has written so far.
    public var bytesSeen: Int { state.withLock { $0.bytesSeen } }

    /// What the console showed, in the order it appeared.
    public var findings: [Finding] { state.withLock { $0.findings } }

    /// The explanation for one console line, if it is a known failure.
    public static func diagnose(_ line: String) -> Finding? {
        if line.contains("No working init found") {
            return Finding(
                signature: "Kernel panic - not syncing: No working init found",
                explanation: "the kernel mounted the root file system but found no program to run as PID 1. "
                    + "It tries init= (if given), /sbin/init, /etc/init, /bin/init and /bin/sh, in that order. "
                    + "Check the image with `swiftvm inspect rootfs IMAGE`, add an init (scripts/build-rootfs.sh "
                    + "makes one), or pass --append init=/bin/sh.")
        }
        if line.contains("VFS: Unable to mount root fs") {
            return Finding(
                signature: "VFS: Unable to mount root fs",
                explanation: "the kernel could not mount its root file system. Pass --rootfs IMAGE (an ext4 image) "
                    + "and make sure the kernel has CONFIG_VIRTIO_MMIO, CONFIG_VIRTIO_BLK and CONFIG_EXT4_FS built in "
                    + "(=y, not =m: a microVM kernel loads no modules); `swiftvm check-config` checks a .config. "
                    + "A partitioned disk needs root=PARTUUID=... (--drive ...,root,partuuid=UUID).")
        }
        if line.contains("Kernel panic - not syncing") {
            let marker = "Kernel panic - not syncing"
            let tail = line.firstRange(of: marker).map { line[$0.upperBound...] } ?? ""
            let reason = String(tail.drop { $0 == ":" || $0 == " " })
            return Finding(
                signature: "Kernel panic - not syncing",
                explanation: "the guest kernel panicked" + (reason.isEmpty ? "" : " (\(reason))")
                    + "; the lines before it on the console say why. With panic=1 on the command line, "
                    + "the kernel reboots a second later and swiftvm exits.")
        }
        return nil
    }

    /// The explanation to print when the run ends, or nil when there is
    /// nothing to say. Silence is only explained when `silentLongEnough`: a
    /// run stopped after a second says nothing about the console.
    public func summary(commandLine: String, silentLongEnough: Bool = true, emulatingHost: Bool = false) -> String? {
        let (seen, findings) = state.withLock { ($0.bytesSeen, $0.findings) }
        if let finding = findings.first {
            return "the guest console showed \"\(finding.signature)\": \(finding.explanation)"
        }
        if seen == 0 && silentLongEnough {
            return ConsoleWatcher.silenceExplanation(commandLine: commandLine, emulatingHost: emulatingHost)
        }
        return nil
    }

    /// Why a guest may print nothing, given its command line and whether
    /// the host's KVM emulates guests (no VMX/SVM), where a Linux kernel
    /// takes half a minute or more to print its first line.
    public static func silenceExplanation(commandLine: String, emulatingHost: Bool = false) -> String {
        let parameters = KernelCommandLine.parameters(in: commandLine)
        var reasons: [String] = []
        if !parameters.values(of: "console").contains(where: { $0.hasPrefix("ttyS") }) {
            reasons.append("the command line has no console=ttyS0, so the kernel logs nowhere swiftvm can show")
        }
        if parameters.value(of: "8250.nr_uarts") == "0" {
            reasons.append("8250.nr_uarts=0 switches off the only serial port")
        }
        if emulatingHost {
            // The kernel buffers its log until the console is registered, which
            // takes 15-40 s of wall time under emulation: silence is expected.
            reasons.append("this host's KVM has no hardware virtualization and emulates the guest, so a Linux "
                + "kernel prints its first console line only when its serial console is registered, 15 to 40 s "
                + "into the boot; wait, or add earlyprintk=serial to see the early boot log at once")
        } else {
            reasons.append("the kernel may lack CONFIG_SERIAL_8250, CONFIG_SERIAL_8250_CONSOLE or CONFIG_PRINTK "
                + "(check with `swiftvm check-config` or `swiftvm inspect kernel`)")
        }
        return "the guest printed nothing on its serial console: " + reasons.joined(separator: "; ")
    }
}
