import SwiftVMHost

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
            || config.commandLine.split(separator: " ").contains { $0.hasPrefix("root=") }
        let findings = DiskImageProbe.rootFindings(image, path: drive.path, hasPartUUID: namesPartition)
        for finding in findings where finding.severity == .warning {
            Log.warning("root drive \(drive.id): \(finding.message)")
        }
        if let error = findings.first(where: { $0.severity == .error }) {
            throw VMMError(.badInput, "root drive \(drive.id): \(error.message) (--no-preflight boots it anyway)")
        }
    }
}
