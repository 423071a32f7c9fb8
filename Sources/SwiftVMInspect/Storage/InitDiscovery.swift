
/// Works out which program the kernel will run as PID 1 from a root file
/// system, the way Linux's `kernel_init()` (init/main.c) looks for it, and
/// why each path it tries would or would not start.
///
/// The order for a root file system mounted from a drive: the `init=` value,
/// if given, and nothing else (when it fails the kernel panics with
/// "Requested init ... failed"); otherwise CONFIG_DEFAULT_INIT when the kernel
/// was built with one (the GuestConfigs kernels are not), then /sbin/init,
/// /etc/init, /bin/init and /bin/sh. A path that is missing is skipped
/// silently; one that exists but cannot run is logged ("Starting init: ...
/// exists but couldn't execute it") and skipped. When all fail the kernel
/// panics with "No working init found". `/init` (or `rdinit=`) is looked up
/// only in an initramfs, so on an ext4 root it is never run.
public enum InitDiscovery {
    public enum Architecture: String, CaseIterable, Sendable {
        case x86_64, aarch64

        /// The ELF e_machine value of programs this guest runs.
        public var elfMachine: UInt16 {
            switch self {
            case .x86_64: 62
            case .aarch64: 183
            }
        }
    }

    /// The fixed fallbacks, in the kernel's order.
    public static let fallbacks = ["/sbin/init", "/etc/init", "/bin/init", "/bin/sh"]
    /// The initramfs's init (`rdinit=` overrides it).
    public static let initramfsInit = "/init"

    public static let noInitPanic =
        "Kernel panic - not syncing: No working init found.  Try passing init= option to kernel. "
        + "See Linux Documentation/admin-guide/init.rst for guidance."

    /// Examines `reader`'s file system as the root of a guest for `arch`,
    /// booted with `init=initParameter` when that is given.
    public static func find(in reader: Ext4Reader, initParameter: String?, arch: Architecture = .x86_64) -> InitReport {
        let examiner = Examiner(reader: reader, arch: arch)
        var candidates: [InitReport.Candidate] = []

        var chosen: String?
        var panicMessage: String?
        // A tried path the check could not decide: what the kernel does from there on is unknown.
        var undecided = false
        let initGiven = !(initParameter ?? "").isEmpty
        if let initParameter, initGiven {
            let requested = examiner.examine(initParameter)
            candidates.append(.init(
                path: initParameter, role: .initParameter, outcome: requested.outcome, detail: requested.detail, tried: true))
            switch requested.outcome {
            case .runs: chosen = initParameter
            case .undecided: undecided = true
            case .missing, .fails:
                panicMessage = "Kernel panic - not syncing: Requested init \(initParameter) failed (error -\(requested.errno))."
            }
        }
        for path in fallbacks {
            let examined = examiner.examine(path)
            let tried = !initGiven && chosen == nil
            candidates.append(.init(path: path, role: .fallback, outcome: examined.outcome, detail: examined.detail, tried: tried))
            guard tried, !undecided else { continue }
            if examined.outcome == .runs { chosen = path }
            if examined.outcome == .undecided { undecided = true }
        }
        if chosen == nil, panicMessage == nil, !undecided { panicMessage = noInitPanic }

        // /init is never run from an ext root; it is looked at last, so that
        // it cannot use up the work the paths the kernel tries need.
        let initramfs = examiner.examine(initramfsInit)
        candidates.insert(.init(
            path: initramfsInit, role: .initramfsOnly, outcome: initramfs.outcome,
            detail: "used only when booted from an initramfs (rdinit=); here: " + initramfs.detail, tried: false), at: 0)

        let mountPoints = checkMountPoints(examiner)
        var warnings = mountPoints.filter { $0.required && !$0.present && $0.checked }.map { "\($0.path): \($0.detail)" }
        let limitReason = reader.work.isExhausted ? reader.work.exhausted().message : nil
        if !undecided, let limitReason, mountPoints.contains(where: { !$0.checked }) {
            warnings.append("not every mount point was checked: \(limitReason)")
        }
        if reader.superblock.hasIncompat(Ext4Superblock.Incompat.needsRecovery) {
            warnings.append(
                "the journal needs recovery (the file system was not cleanly unmounted); "
                    + "this check reads it without replaying the journal")
        }
        var report = InitReport(
            candidates: candidates, chosen: chosen, panicMessage: panicMessage, mountPoints: mountPoints, warnings: warnings)
        if undecided { report.undecidedReason = limitReason ?? reader.work.exhausted().message }
        return report
    }

    /// /dev, /proc and /sys are the seed's minimum ("The Minimum Directory
    /// Structure"); /run and /var are what OpenRC-like inits expect.
    static func checkMountPoints(_ examiner: Examiner) -> [InitReport.MountPoint] {
        let needs: [(String, Bool, String)] = [
            ("/dev", true, "the kernel cannot mount devtmpfs there (it logs \"devtmpfs: error mounting -2\"), so init finds no device nodes"),
            ("/proc", true, "procfs has no mount point; ps, mount and most tools that read kernel state fail"),
            ("/sys", true, "sysfs has no mount point; mdev, udev and tools that read /sys fail"),
            ("/run", false, "OpenRC-like inits need it; a shell or BusyBox init does not"),
            ("/var", false, "OpenRC-like inits and most daemons need it; a shell or BusyBox init does not"),
        ]
        return needs.map { path, required, consequence in
            let found: Ext4Inode?
            do throws(Ext4Error) { found = try examiner.reader.lookup(path) } catch {
                if error.kind == .workLimit {
                    return .init(path: path, required: required, present: false, detail: Examined.notDecided, checked: false)
                }
                return .init(path: path, required: required, present: false, detail: "cannot be read: \(error)")
            }
            guard let found else {
                return .init(path: path, required: required, present: false, detail: "missing: " + consequence)
            }
            guard found.fileType == .directory else {
                return .init(
                    path: path, required: required, present: false,
                    detail: "is \(found.fileType.rawValue), not a directory: " + consequence)
            }
            return .init(path: path, required: required, present: true, detail: "a directory")
        }
    }
}
