import SwiftVMDevices
import Glibc
import SwiftVMHost

extension Machine {
    /// The `Async` io engine (io_uring): opens and locks the drive like the
    /// `Sync` engine, then sets up the ring its I/O goes through.
    static func openAsyncBackend(
        _ drive: DriveConfig, ringEntries: UInt32 = IOUringBlockBackend.ringEntries
    ) throws(VMMError) -> any BlockBackend {
        let file = try FileBlockBackend(drive: drive)
        let ring: IOUring
        do {
            ring = try IOUring(entries: ringEntries)
            return try IOUringBlockBackend(file: file, ring: ring, entries: ringEntries)
        } catch {
            throw asyncEngineUnavailable(drive, error)
        }
    }

    /// The error for a drive asking for engine=async on a host whose kernel
    /// would not set up an io_uring: the reason, and what to do about it.
    static func asyncEngineUnavailable(_ drive: DriveConfig, _ error: SystemError) -> VMMError {
        let remedy: String
        switch error.errno {
        case EPERM:
            remedy = "which this host's kernel refused (\(error)); check `sysctl kernel.io_uring_disabled` or use engine=sync"
        case ENOSYS:
            remedy = "which this host's kernel does not provide (\(error)); it needs Linux 5.10.51 or later "
                + "built with CONFIG_IO_URING, or use engine=sync"
        case ENOMEM:
            remedy = "but the host would not lock memory for its ring (\(error)); "
                + "raise the locked-memory limit (ulimit -l) or use engine=sync"
        default:
            remedy = "but the host could not set up its ring (\(error)); use engine=sync"
        }
        return VMMError(.usage, "drive \(drive.id): engine=async needs io_uring, \(remedy)")
    }
}
