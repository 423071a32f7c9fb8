import SwiftVMHost

/// A failure to build, start or control a microVM.
///
/// `kind` says what went wrong in a form a program can switch on, naming the
/// file or drive involved; `message` is the sentence swiftvm prints, with the
/// cause and the fix.
///
/// ```swift
/// do { vm = try MicroVM(config: config) } catch {
///     switch error.kind {
///     case .missingFile(let path): ...
///     case .kvmUnavailable: ...
///     default: print(error.message)
///     }
/// }
/// ```
public struct VMMError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The configuration asks for something impossible (one image given to
        /// two drives, an initrd larger than guest RAM), or an operation came
        /// at the wrong time (pausing a VM that is not running).
        case usage
        /// A file the configuration names does not exist or cannot be read as
        /// a file: no such file, no permission, a symbolic link loop, or a
        /// path that names a directory, a FIFO or a device where a file belongs.
        case missingFile(path: String)
        /// The kernel file exists but cannot be booted (wrong format, truncated).
        case badKernel(path: String)
        /// The initrd cannot be used.
        case badInitrd(path: String)
        /// A drive's image cannot be used (not a disk image, no init on a root drive, ...).
        case badDrive(id: String)
        /// A drive's image is locked by another VM or process.
        case driveBusy(id: String)
        /// The CPU template is malformed or asks for what KVM refuses.
        case badCPUTemplate(path: String)
        /// Another input is unusable as given.
        case badInput
        /// KVM cannot be used on this host.
        case kvmUnavailable
        /// The host refused memory, threads or descriptors.
        case hostResource
        /// A bug or an unexpected KVM refusal.
        case internalError
        /// An older spelling of `missingFile` for inputs without a path.
        case missingInput
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// The exit status `swiftvm` uses for this error (docs/exit-codes.md).
    public var exitCode: Int32 {
        switch kind {
        case .usage: ExitStatus.usage
        case .missingFile, .missingInput: ExitStatus.missingInput
        case .badKernel, .badInitrd, .badDrive, .driveBusy, .badCPUTemplate, .badInput: ExitStatus.badInput
        case .kvmUnavailable: ExitStatus.kvmUnavailable
        case .hostResource: ExitStatus.hostResource
        case .internalError: ExitStatus.internalError
        }
    }

    static func kvm(_ error: KVMError, while step: String) -> VMMError {
        switch error {
        case .deviceMissing, .permissionDenied, .notKVMDevice, .unsupportedAPIVersion, .missingCapability:
            return VMMError(.kvmUnavailable, error.description)
        case .system(let system):
            let kind: Kind = system.errno == 12 /* ENOMEM */ ? .hostResource : .internalError
            return VMMError(kind, "\(step): \(system)")
        }
    }
}
