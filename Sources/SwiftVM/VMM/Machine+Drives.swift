import Glibc
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
        try checkDistinctImages(config.drives)
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

    /// Refuses one image given to two drives (the same path twice, or two
    /// paths to one file: compared by device and inode, or by device number
    /// for block devices) unless both are read-only. Checked before any drive
    /// is opened, so the message names both drives instead of the second
    /// one's lock failing as if another process held the image.
    static func checkDistinctImages(_ drives: [DriveConfig]) throws(VMMError) {
        struct Identity: Hashable {
            var device: UInt64
            var inode: UInt64
        }
        var first: [Identity: DriveConfig] = [:]
        for drive in drives {
            var info = stat()
            // A path that cannot be examined is reported when it is opened.
            guard stat(drive.path, &info) == 0 else { continue }
            let identity = (info.st_mode & S_IFMT) == S_IFBLK
                ? Identity(device: UInt64(info.st_rdev), inode: 0)
                : Identity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
            guard let earlier = first[identity] else {
                first[identity] = drive
                continue
            }
            if earlier.readOnly && drive.readOnly { continue }
            let paths = earlier.path == drive.path ? drive.path : "\(earlier.path) and \(drive.path) are one file"
            throw VMMError(
                .usage,
                "the same image is given twice (ids \(earlier.id) and \(drive.id)): \(paths); a disk image written "
                    + "through two drives at once is corrupted, so give each drive its own image (or attach both read-only)")
        }
    }

    private static func checkRootImage(_ drive: DriveConfig, config: VMConfig) throws(VMMError) {
        let image = try FileImage(path: drive.path, role: "root drive", accepting: [.regularFile, .blockDevice])
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
        // The warnings include the missing mount points: each is said once.
        for warning in report.warnings { Log.warning("root drive \(drive.id): \(warning)") }
        if let reason = report.undecidedReason {
            Log.warning(
                "root drive \(drive.id) (\(drive.path)): cannot tell whether the kernel will find an init: \(reason); "
                    + "booting it anyway")
            return
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
