import SwiftVMMemory
import SwiftVMBoot
import SwiftVMInspect

extension Machine {
    /// Problems with the command line that make a Linux guest fail silently,
    /// found before it runs: no console the user will see, no root file
    /// system, a `root=` naming a drive that is not there.
    ///
    /// Only applied to a Linux kernel (an ELF with "Linux" notes); other
    /// payloads, like swiftvm's test guest, have their own conventions.
    static func commandLineFindings(_ config: VMConfig, kernelIsLinux: Bool) -> [DiskImageFinding] {
        guard kernelIsLinux else { return [] }
        let parameters = KernelCommandLine.parameters(in: config.guestCommandLine)
        var findings: [DiskImageFinding] = []
        let consoles = parameters.values(of: "console")
        if !consoles.contains(where: { $0.hasPrefix("ttyS0") }) {
            let given = consoles.isEmpty ? "no console=" : consoles.map { "console=" + $0 }.joined(separator: " ")
            findings.append(.init(
                severity: .warning,
                message: "the command line has \(given) but no console=ttyS0: the kernel's messages will not "
                    + "appear here (add --append console=ttyS0)"))
        }
        if parameters.value(of: "8250.nr_uarts") == "0" {
            findings.append(.init(
                severity: .warning,
                message: "8250.nr_uarts=0 switches off the guest's only serial port: nothing will appear on the "
                    + "console (use 8250.nr_uarts=1)"))
        }
        let root = parameters.value(of: "root")
        if root == nil && config.initrdPath == nil {
            findings.append(.init(
                severity: .warning,
                message: "no root file system: without --rootfs, a root= parameter or an --initrd, the kernel will stop "
                    + "with \"VFS: Unable to mount root fs\" (scripts/build-rootfs.sh builds an image for --rootfs)"))
        }
        if let root, root.hasPrefix("/dev/vd"), let letter = root.dropFirst("/dev/vd".count).first,
            let scalar = letter.unicodeScalars.first, ("a"..."z").contains(letter)
        {
            let index = Int(scalar.value - UnicodeScalar("a").value)
            let drives = config.drives.count
            if index >= drives {
                findings.append(.init(
                    severity: .error,
                    message: "root=\(root) names virtio disk \(index + 1), but \(drives == 0 ? "no drives are" : drives == 1 ? "only 1 drive is" : "only \(drives) drives are") attached "
                        + "(--rootfs or --drive)"))
            }
        }
        return findings
    }

    /// Logs the warnings and throws the first error of `commandLineFindings`.
    static func preflightCommandLine(_ config: VMConfig, kernel: FileImage) throws(VMMError) {
        guard config.preflight else { return }
        // A bzImage is Linux's own format; a vmlinux says so in its notes.
        let isBzImage = if case .bzImage = KernelFormat.detect(kernel) { true } else { false }
        let isLinux = isBzImage || ELFNotes.owners(kernel).contains("Linux")
        let findings = commandLineFindings(config, kernelIsLinux: isLinux)
        for finding in findings where finding.severity == .warning { Log.warning(finding.message) }
        if let error = findings.first(where: { $0.severity == .error }) {
            throw VMMError(.usage, error.message + " (--no-preflight boots it anyway)")
        }
    }
}
