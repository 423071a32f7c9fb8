/// What a non-blocking read or write on a host socket did.
public enum VsockHostIO: Sendable, Equatable {
    /// This many bytes moved (more than zero).
    case transferred(Int)
    /// Nothing can move now; the event loop says when it can.
    case wouldBlock
    /// A read found the end of the stream: the peer shut down its sending side.
    case endOfStream
    /// The call failed with this errno (the peer reset or went away).
    case failed(Int32)
}

/// What accepting a host connection on the listening socket gave.
public enum VsockAcceptResult: Sendable, Equatable {
    /// A new connected socket, already non-blocking.
    case accepted(Int32)
    /// No connection is waiting.
    case wouldBlock
    /// accept(2) failed with this errno.
    case failed(Int32)
}

/// What connecting to a host listener for a guest-initiated connection gave.
public enum VsockConnectResult: Sendable, Equatable {
    /// A connected, non-blocking socket.
    case connected(Int32)
    /// Nobody accepts connections there; the reason is for the log.
    case refused(String)
}

/// The host end of a hybrid vsock device: where guest connections come out
/// and host connections go in.
///
/// ``VirtioVsock`` holds the protocol and the connection state machine; a host
/// side only moves bytes on descriptors, so the device can be tested with a
/// fake one. Every call must return at once: descriptors are non-blocking,
/// and the device learns of readiness through the event loop, which it
/// subscribes the descriptors to. The swiftvm host side is Unix sockets
/// (`VsockUnixHost` in the SwiftVM module), as Firecracker's hybrid vsock.
///
/// Calls arrive one at a time (the device serialises them), on the event
/// loop's thread or, for ``close(_:)`` during a device reset, on a vCPU thread.
public protocol VsockHostSide: AnyObject, Sendable {
    /// The socket host programs connect to, listening since the host side was
    /// made (so that a bad path is reported before the guest boots); nil if
    /// this host side accepts no host-initiated connections. The device
    /// watches it while it is active and calls ``accept()`` when it is readable.
    var listeningDescriptor: Int32? { get }
    /// Takes one waiting host connection off the listening socket.
    func accept() -> VsockAcceptResult
    /// Connects to the host listener for the guest's connection to host port
    /// `port` (hybrid vsock: the Unix socket `<uds_path>_<port>`), without waiting.
    func connect(toPort port: UInt32) -> VsockConnectResult
    /// Reads into `buffer` without blocking.
    func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> VsockHostIO
    /// Writes from `buffer` without blocking, never raising SIGPIPE.
    func write(_ fd: Int32, from buffer: UnsafeRawBufferPointer) -> VsockHostIO
    /// Half-closes `fd` (shutdown(2)): `reading` stops input, `writing` sends end-of-stream.
    func shutdown(_ fd: Int32, reading: Bool, writing: Bool)
    /// Closes a connection socket the device got from ``accept()`` or ``connect(toPort:)``.
    func close(_ fd: Int32)
}
