import SwiftVMHost

/// A failure to build or start a microVM, classified by what the user must fix.
public struct VMMError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The configuration asks for something impossible.
        case usage
        /// An input file exists but cannot be used as given.
        case badInput
        /// An input file is missing or unreadable.
        case missingInput
        /// KVM cannot be used on this host.
        case kvmUnavailable
        /// The host refused memory, threads or descriptors.
        case hostResource
        /// A bug or an unexpected KVM refusal.
        case internalError
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// The exit status `swiftvm` uses for this error.
    public var exitCode: Int32 {
        switch kind {
        case .usage: ExitStatus.usage
        case .badInput: ExitStatus.badInput
        case .missingInput: ExitStatus.missingInput
        case .kvmUnavailable: ExitStatus.kvmUnavailable
        case .hostResource: ExitStatus.hostResource
        case .internalError: ExitStatus.internalError
        }
    }

    static func kvm(_ error: KVMError, while step: String) -> VMMError {
        switch error {
        case .deviceMissing, .permissionDenied, .unsupportedAPIVersion, .missingCapability:
            return VMMError(.kvmUnavailable, error.description)
        case .system(let system):
            let kind: Kind = system.errno == 12 /* ENOMEM */ ? .hostResource : .internalError
            return VMMError(kind, "\(step): \(system)")
        }
    }
}
