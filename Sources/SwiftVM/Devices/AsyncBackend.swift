extension Machine {
    /// The `Async` io engine (io_uring).
    static func openAsyncBackend(_ drive: DriveConfig) throws(VMMError) -> any BlockBackend {
        throw VMMError(.usage, "drive \(drive.id): engine=async is not available in this build; use engine=sync")
    }
}
