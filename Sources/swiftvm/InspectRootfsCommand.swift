import ArgumentParser
import SwiftVM
import SwiftVMMemory
import SwiftVMInspect

/// `swiftvm inspect rootfs`: the ext file system facts the kernel checks when
/// it mounts the root drive, then which init it would run, as Linux's
/// kernel_init() searches for it.
struct InspectRootfsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rootfs",
        abstract: "Check that a root file system image would boot: its superblock, its init and its mount points.",
        discussion: """
            Reads an ext2/3/4 image without mounting it and reports what the guest kernel will find: \
            the superblock facts (magic, revision, inode and block size, size against the file's size), \
            then each path the kernel tries as init (init=, /sbin/init, /etc/init, /bin/init, /bin/sh), \
            following symbolic links and #! interpreters, then /dev, /proc and /sys. Exit status 0 when \
            the kernel would start an init, 65 when it would panic or the image is not a usable ext \
            file system, 66 when the file cannot be read, 75 when the check ran out of its work limit \
            before it could decide (swiftvm run then boots the image with a warning).
            """)

    enum Architecture: String, ExpressibleByArgument, CaseIterable {
        case x86_64, aarch64

        var guest: InitDiscovery.Architecture {
            switch self {
            case .x86_64: .x86_64
            case .aarch64: .aarch64
            }
        }
    }

    @Argument(help: "The root file system image (an ext2/3/4 file system, as the guest's /dev/vda).")
    var file: String

    @Option(name: .customLong("init"), help: ArgumentHelp("The init= kernel parameter to check, if the guest gets one.", valueName: "path"))
    var initParameter: String?

    @Option(help: "The guest architecture whose programs init must be: x86_64 or aarch64.")
    var arch: Architecture = .x86_64

    func run() throws {
        let image = try openInput(file, role: "root file system image", accepting: [.regularFile, .blockDevice])
        var usable = true
        let findings = DiskImageProbe.rootFindings(image, path: file, hasPartUUID: false)
        let reader: Ext4Reader
        do { reader = try Ext4Reader(image) } catch {
            print("\(file): not a usable ext file system")
            for finding in findings { print("  \(finding.severity == .error ? "error" : "warning"): \(finding)") }
            print("  error: \(error)")
            print("verdict: the kernel cannot mount this image as its root file system")
            throw ExitCode(ExitStatus.badInput)
        }
        printSuperblock(reader.superblock, fileSize: image.size)
        for finding in findings {
            print("  \(finding.severity == .error ? "error" : "warning"): \(finding)")
            if finding.severity == .error { usable = false }
        }

        let report = InitDiscovery.find(in: reader, initParameter: initParameter, arch: arch.guest)
        printInit(report)
        printMountPoints(report)

        if !usable {
            print("verdict: the kernel cannot mount this image as its root file system (see the errors above)")
        } else if let reason = report.undecidedReason {
            print("verdict: cannot decide whether the kernel will find an init: \(reason)")
            throw ExitCode(ExitStatus.undecided)
        } else if let chosen = report.chosen {
            print("verdict: the kernel will run \(chosen) as PID 1")
        } else {
            print("verdict: no working init; the kernel will panic: \(report.panicMessage ?? InitDiscovery.noInitPanic)")
        }
        if !usable || !report.findsInit { throw ExitCode(ExitStatus.badInput) }
    }

    private func printSuperblock(_ superblock: Ext4Superblock, fileSize: UInt64) {
        let sizeNote = superblock.fileSystemSize == fileSize ? "the file's size" : "the file has \(fileSize) bytes"
        let revision = superblock.revision == 1 ? "1 (dynamic)" : superblock.revision == 0 ? "0 (original, fixed 128-byte inodes)" : "\(superblock.revision)"
        let features = superblock.notableFeatures
        print("\(file): \(superblock.flavor) file system")
        row("magic", "0xEF53")
        row("revision", revision)
        row("inode size", "\(superblock.inodeSize) bytes")
        row("block size", "\(superblock.blockSize) bytes")
        row("block count", "\(superblock.blockCount)")
        row("size", "\(superblock.fileSystemSize) bytes (\(sizeNote))")
        row("volume name", superblock.volumeName.isEmpty ? "(none)" : superblock.volumeName)
        row("features", features.isEmpty ? "(none of note)" : features.joined(separator: ", "))
        if superblock.hasIncompat(Ext4Superblock.Incompat.inlineData) {
            print("  note: inline_data: files kept inside their inodes cannot be read by this check")
        }
    }

    private func printInit(_ report: InitReport) {
        print("init, in the order Linux's kernel_init() tries it:")
        let width = max(12, report.candidates.map { label($0).count }.max() ?? 0)
        for candidate in report.candidates {
            let name = label(candidate).padding(to: width)
            let state: String
            switch (candidate.tried, candidate.outcome) {
            case (false, _) where candidate.role == .initramfsOnly: state = "not tried"
            case (false, _): state = report.chosen == nil ? "not tried (init= is given)" : "not tried"
            case (true, .runs): state = "RUNS"
            case (true, .missing): state = "missing"
            case (true, .fails): state = "fails"
            case (true, .undecided): state = "not decided"
            }
            // A missing path needs no detail beyond its state.
            let detail = state == "missing" && candidate.detail == "missing" ? "" : ": " + candidate.detail
            print("  \(name) \(state)\(detail)")
            if candidate.tried, case .fails(let errno) = candidate.outcome, candidate.role == .fallback {
                print("  \("".padding(to: width)) the kernel logs: Starting init: \(candidate.path) exists but couldn't execute it (error -\(errno))")
            }
        }
    }

    private func printMountPoints(_ report: InitReport) {
        print("mount points:")
        for point in report.mountPoints {
            let state = !point.checked ? "not checked" : point.present ? "ok" : point.required ? "warning" : "note"
            print("  \(point.path.padding(to: 6)) \(state): \(point.detail)")
        }
        for warning in report.warnings where !report.mountPoints.contains(where: { "\($0.path): \($0.detail)" == warning }) {
            print("  warning: \(warning)")
        }
    }

    private func label(_ candidate: InitReport.Candidate) -> String {
        candidate.role == .initParameter ? "init=\(candidate.path)" : candidate.path
    }

    private func row(_ name: String, _ value: String) {
        print("  \(name.padding(to: 12)) \(value)")
    }
}

extension String {
    /// The string followed by spaces up to `width` characters.
    fileprivate func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
