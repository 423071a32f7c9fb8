import SwiftVMDevices
import SwiftVMHost
import SwiftVMMemory
import SwiftVMBoot
import SwiftVMInspect

extension Machine {
    /// Opens every drive's backing file and checks the root drive's content
    /// before anything boots, so that a rootfs the kernel could not mount is
    /// reported now rather than as a panic on the console.
    static func openDrives(_ config: VMConfig) throws(VMMError) -> [String: any BlockBackend] {
        var backends: [String: any BlockBackend] = [:]
        for drive in config.drives {
            switch drive.ioEngine {
            case .sync:
                backends[drive.id] = try FileBlockBackend(drive: drive)
            case .async:
                backends[drive.id] = try openAsyncBackend(drive)
            }
            if drive.isRootDevice && config.preflight {
                try checkRootImage(drive, config: config)
            }
        }
        return backends
    }

    private static func checkRootImage(_ drive: DriveConfig, config: VMConfig) throws(VMMError) {
        let image = try FileImage(path: drive.path, role: "root drive")
        // A root= the user wrote (root=/dev/vda1, say) names the partition itself.
        let namesPartition = drive.partUUID != nil
            || KernelCommandLine.parameters(in: config.commandLine).value(of: "root") != nil
        let findings = DiskImageProbe.rootFindings(image, path: drive.path, hasPartUUID: namesPartition)
        for finding in findings where finding.severity == .warning {
            Log.warning("root drive \(drive.id): \(finding.message)")
        }
        if let error = findings.first(where: { $0.severity == .error }) {
            throw VMMError(.badDrive(id: drive.id), "root drive \(drive.id): \(error.message) (--no-preflight boots it anyway)")
        }
        try checkInit(image, drive: drive, config: config)
    }

    /// Walks the kernel's init search on an ext root image, as `swiftvm inspect
    /// rootfs` does, and refuses an image on which the kernel would panic.
    private static func checkInit(_ image: FileImage, drive: DriveConfig, config: VMConfig) throws(VMMError) {
        guard case .ext = DiskImageProbe.identify(image), let reader = try? Ext4Reader(image) else { return }
        let initParameter = KernelCommandLine.parameters(in: config.guestCommandLine).value(of: "init")
        let report = InitDiscovery.find(in: reader, initParameter: initParameter)
        for warning in report.warnings { Log.warning("root drive \(drive.id): \(warning)") }
        for mount in report.mountPoints where mount.required && !mount.present {
            Log.warning("root drive \(drive.id): \(mount.path): \(mount.detail)")
        }
        guard !report.findsInit else { return }
        let reasons = report.candidates.filter(\.tried).map { "\($0.path): \($0.detail)" }.joined(separator: "; ")
        throw VMMError(
            .badDrive(id: drive.id),
            "root drive \(drive.id) (\(drive.path)): the kernel would find no init and panic with "
                + "\"\(report.panicMessage ?? "No working init found")\" (\(reasons)). `swiftvm inspect rootfs \(drive.path)` "
                + "shows the details; add an init, pass --append init=/path, or --no-preflight to boot it anyway")
    }
}
