import Glibc

/// Why KVM cannot be used, or a KVM call that failed, in words a user can act on.
public enum KVMError: Error, Equatable, Sendable, CustomStringConvertible {
    /// `/dev/kvm` does not exist.
    case deviceMissing(path: String)
    /// `/dev/kvm` exists but this user may not open it.
    case permissionDenied(path: String)
    /// The path names something other than the KVM device: `kind` says
    /// what (a regular file, a directory, a FIFO, a character device that
    /// does not answer KVM's ioctls).
    case notKVMDevice(path: String, kind: String)
    /// The kernel speaks a KVM API other than version 12.
    case unsupportedAPIVersion(Int32)
    /// A capability the VMM depends on is absent.
    case missingCapability(name: String, purpose: String)
    /// Any other failed ioctl or system call.
    case system(SystemError)

    public var description: String {
        switch self {
        case .deviceMissing(let path):
            "\(path) does not exist, so this host offers no KVM. Enable hardware virtualization "
                + "(VT-x or AMD-V) in the firmware and load the kvm_intel or kvm_amd module; "
                + "inside a cloud VM, use an instance type with nested virtualization."
        case .permissionDenied(let path):
            "permission denied opening \(path). Add your user to the group that owns it "
                + "(usually: sudo usermod -aG kvm $USER, then log in again) or run swiftvm as root."
        case .notKVMDevice(let path, let kind):
            "\(path) is \(kind), not the KVM device: give the KVM character device (normally /dev/kvm), "
                + "or leave the option out to use /dev/kvm."
        case .unsupportedAPIVersion(let version):
            "/dev/kvm reports KVM API version \(version); swiftvm needs version 12, "
                + "which every Linux kernel since 2.6.22 provides."
        case .missingCapability(let name, let purpose):
            "this host's KVM lacks \(name), which swiftvm needs for \(purpose). "
                + "Use a newer host kernel or a host with full KVM support."
        case .system(let error):
            error.description
        }
    }
}
