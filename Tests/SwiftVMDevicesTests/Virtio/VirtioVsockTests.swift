import Synchronization
import SwiftVMDevices
import SwiftVMMemory
import Testing

// MARK: - Test doubles

/// A host side whose sockets are byte arrays: tests put bytes where the
/// device reads, look at what it wrote, and decide how much a socket takes.
final class VsockFakeHost: VsockHostSide {
    struct Socket {
        /// Bytes the host peer sent, not yet read by the device.
        var inbound: [UInt8] = []
        var inboundEnded = false
        var readError: Int32?
        /// Bytes the device wrote to the host peer.
        var outbound: [UInt8] = []
        /// Bytes the socket still takes before it would block; nil: any amount.
        var writeRoom: Int?
        var writeError: Int32?
        var shutRead = false
        var shutWrite = false
        var closed = false
        /// The host port a guest-initiated connection reached.
        var port: UInt32?
    }

    struct State {
        var sockets: [Int32: Socket] = [:]
        var nextFD: Int32 = 1000
        var pendingAccepts: [Int32] = []
        var acceptError: Int32?
        var listeningPorts: Set<UInt32> = []
        var connects: [UInt32] = []
        var reads = 0
    }

    static let listener: Int32 = 99
    let state = Mutex(State())
    let listens: Bool

    init(listens: Bool = true) { self.listens = listens }

    var listeningDescriptor: Int32? { listens ? Self.listener : nil }

    /// A host program connects to the listening socket; returns its descriptor.
    @discardableResult
    func hostConnects(sending bytes: String = "") -> Int32 {
        state.withLock { s in
            let fd = s.nextFD
            s.nextFD += 1
            s.sockets[fd] = Socket(inbound: Array(bytes.utf8))
            s.pendingAccepts.append(fd)
            return fd
        }
    }

    func listen(onPort port: UInt32) { _ = state.withLock { $0.listeningPorts.insert(port) } }

    func socket(_ fd: Int32) -> Socket? { state.withLock { $0.sockets[fd] } }
    func change(_ fd: Int32, _ body: (inout Socket) -> Void) {
        state.withLock { s in
            if var socket = s.sockets[fd] {
                body(&socket)
                s.sockets[fd] = socket
            }
        }
    }
    func send(_ fd: Int32, _ bytes: [UInt8]) { change(fd) { $0.inbound += bytes } }
    func send(_ fd: Int32, _ text: String) { send(fd, Array(text.utf8)) }
    func outbound(_ fd: Int32) -> String { String(decoding: socket(fd)?.outbound ?? [], as: UTF8.self) }
    func takeOutbound(_ fd: Int32) -> [UInt8] {
        state.withLock { s in
            let bytes = s.sockets[fd]?.outbound ?? []
            s.sockets[fd]?.outbound = []
            return bytes
        }
    }
    func isClosed(_ fd: Int32) -> Bool { socket(fd)?.closed ?? false }
    var openSockets: [Int32] { state.withLock { $0.sockets.filter { !$0.value.closed }.map(\.key).sorted() } }
    /// The socket of the latest guest-initiated connection to `port`.
    func connection(toPort port: UInt32) -> Int32? {
        state.withLock { $0.sockets.filter { $0.value.port == port }.map(\.key).max() }
    }

    func accept() -> VsockAcceptResult {
        state.withLock { s in
            if let error = s.acceptError { return .failed(error) }
            guard !s.pendingAccepts.isEmpty else { return .wouldBlock }
            return .accepted(s.pendingAccepts.removeFirst())
        }
    }

    func connect(toPort port: UInt32) -> VsockConnectResult {
        state.withLock { s in
            s.connects.append(port)
            guard s.listeningPorts.contains(port) else { return .refused("nobody listens on port \(port)") }
            let fd = s.nextFD
            s.nextFD += 1
            s.sockets[fd] = Socket(port: port)
            return .connected(fd)
        }
    }

    func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> VsockHostIO {
        state.withLock { s in
            s.reads += 1
            guard var socket = s.sockets[fd], !socket.closed else { return .failed(9) }
            if let error = socket.readError { return .failed(error) }
            guard !socket.inbound.isEmpty else { return socket.inboundEnded ? .endOfStream : .wouldBlock }
            let count = min(buffer.count, socket.inbound.count)
            buffer.copyBytes(from: socket.inbound[0..<count])
            socket.inbound.removeFirst(count)
            s.sockets[fd] = socket
            return .transferred(count)
        }
    }

    func write(_ fd: Int32, from buffer: UnsafeRawBufferPointer) -> VsockHostIO {
        state.withLock { s in
            guard var socket = s.sockets[fd], !socket.closed else { return .failed(9) }
            if let error = socket.writeError { return .failed(error) }
            let count = min(buffer.count, socket.writeRoom ?? buffer.count)
            guard count > 0 else { return .wouldBlock }
            socket.outbound += buffer[0..<count]
            if let room = socket.writeRoom { socket.writeRoom = room - count }
            s.sockets[fd] = socket
            return .transferred(count)
        }
    }

    func shutdown(_ fd: Int32, reading: Bool, writing: Bool) {
        change(fd) { socket in
            if reading { socket.shutRead = true }
            if writing { socket.shutWrite = true }
        }
    }

    func close(_ fd: Int32) { change(fd) { $0.closed = true } }
}

/// An event registry the test drives: it fires readiness, timers and posted
/// work when told to.
final class VsockFakeEvents: EventRegistry {
    struct Subscription {
        var fd: Int32
        var interest: EventInterest
        var handler: @Sendable (EventReadiness) -> Void
    }

    struct State {
        var next: UInt64 = 1
        var subscriptions: [UInt64: Subscription] = [:]
        var timers: [UInt64: (milliseconds: Int, handler: @Sendable () -> Void)] = [:]
        var posted: [@Sendable () -> Void] = []
    }

    let state = Mutex(State())

    func subscribe(_ fd: Int32, interest: EventInterest, handler: @escaping @Sendable (EventReadiness) -> Void) throws -> EventToken {
        state.withLock { s in
            defer { s.next += 1 }
            s.subscriptions[s.next] = Subscription(fd: fd, interest: interest, handler: handler)
            return EventToken(s.next)
        }
    }

    func modify(_ token: EventToken, interest: EventInterest) throws {
        state.withLock { $0.subscriptions[token.value]?.interest = interest }
    }

    func remove(_ token: EventToken) {
        state.withLock { s in
            s.subscriptions[token.value] = nil
            s.timers[token.value] = nil
        }
    }

    func addTimer(afterMilliseconds milliseconds: Int, periodMilliseconds: Int?, handler: @escaping @Sendable () -> Void) -> EventToken {
        state.withLock { s in
            defer { s.next += 1 }
            s.timers[s.next] = (milliseconds, handler)
            return EventToken(s.next)
        }
    }

    func post(_ work: @escaping @Sendable () -> Void) { state.withLock { $0.posted.append(work) } }

    /// The interest the loop has for `fd`, nil when it is not watched.
    func interest(_ fd: Int32) -> EventInterest? {
        state.withLock { $0.subscriptions.values.first { $0.fd == fd }?.interest }
    }
    var watchedDescriptors: [Int32] { state.withLock { $0.subscriptions.values.map(\.fd).sorted() } }
    var timerCount: Int { state.withLock { $0.timers.count } }
    var postedCount: Int { state.withLock { $0.posted.count } }

    /// Calls `fd`'s handler, as the loop does when it is ready.
    func fire(_ fd: Int32, _ readiness: EventReadiness = .readable) {
        let handler = state.withLock { $0.subscriptions.values.first { $0.fd == fd }?.handler }
        handler?(readiness)
    }

    /// Fires every armed timer once (the device checks its own clock).
    func fireTimers() {
        let handlers = state.withLock { s in
            defer { s.timers = [:] }
            return s.timers.values.map(\.handler)
        }
        for handler in handlers { handler() }
    }

    func runPosted() {
        while true {
            let work = state.withLock { s in
                defer { s.posted = [] }
                return s.posted
            }
            if work.isEmpty { return }
            for item in work { item() }
        }
    }
}

final class VsockManualClock: Sendable {
    private let value = Atomic<UInt64>(1_000)
    var now: UInt64 { value.load(ordering: .relaxed) }
    func advance(_ milliseconds: UInt64) { value.add(milliseconds, ordering: .relaxed) }
}

/// A packet as the guest sees it on the rx queue.
struct VsockPacket: Equatable, CustomStringConvertible {
    var header: VsockHeader
    var payload: [UInt8]
    var op: VsockOp? { header.operation }
    var text: String { String(decoding: payload, as: UTF8.self) }
    var description: String { "\(header) \(payload.count) bytes" }
}

/// The device behind a virtio-mmio transport, driven as Linux's
/// virtio_vsock driver drives it, with a fake host side and event loop.
final class VsockRig {
    typealias R = MMIODriver.Register
    static let guestCID: UInt64 = 3
    static let rxBufferSize = VsockHeader.size + 4096

    let memory: GuestMemory
    let host: VsockFakeHost
    let events = VsockFakeEvents()
    let clock = VsockManualClock()
    let interrupt = CountingInterruptLine()
    let device: VirtioVsock
    let transport: VirtioMMIOTransport
    var rx: MockDriverQueue
    var tx: MockDriverQueue
    var event: MockDriverQueue
    private var rxBuffers: [UInt32: GuestAddress] = [:]
    private var eventBuffers: [UInt32: GuestAddress] = [:]

    init(limits: VsockLimits = VsockLimits(), listens: Bool = true, rxBuffers: Int = 16) throws {
        memory = try GuestMemory(regions: [(GuestAddress(0), 64 << 20)])
        host = VsockFakeHost(listens: listens)
        let clock = clock
        device = VirtioVsock(guestCID: Self.guestCID, host: host, limits: limits, clock: { clock.now })
        transport = VirtioMMIOTransport(device: device, memory: memory, interrupt: interrupt, events: events)
        (rx, tx, event) = try Self.makeQueues(memory)
        try start()
        if rxBuffers > 0 { try postRx(rxBuffers) }
    }

    static func makeQueues(_ memory: GuestMemory) throws -> (MockDriverQueue, MockDriverQueue, MockDriverQueue) {
        (
            try MockDriverQueue(memory: memory, size: 256, base: 0x1_0000, data: 0x10_0000),
            try MockDriverQueue(memory: memory, size: 256, base: 0x4_0000, data: 0x100_0000),
            try MockDriverQueue(memory: memory, size: 256, base: 0x8_0000, data: 0x300_0000)
        )
    }

    func write(_ offset: UInt64, _ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { transport.write(offset: offset, from: $0) }
    }

    func read(_ offset: UInt64) -> UInt32 {
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) { transport.read(offset: offset, into: $0) }
        return UInt32(littleEndian: value)
    }

    /// The init sequence of §3.1.1 with fresh queues, accepting every feature.
    func start() throws {
        write(R.status, 0)
        (rx, tx, event) = try Self.makeQueues(memory)
        rxBuffers = [:]
        eventBuffers = [:]
        write(R.status, 1)
        write(R.status, 3)
        write(R.deviceFeaturesSel, 0)
        let low = read(R.deviceFeatures)
        write(R.deviceFeaturesSel, 1)
        let high = read(R.deviceFeatures)
        write(R.driverFeaturesSel, 0)
        write(R.driverFeatures, low)
        write(R.driverFeaturesSel, 1)
        write(R.driverFeatures, high)
        write(R.status, 11)
        for (index, queue) in [rx, tx, event].enumerated() {
            write(R.queueSel, UInt32(index))
            write(R.queueNum, UInt32(queue.size))
            for (low, address) in [(R.queueDescLow, queue.descriptorTable), (R.queueDriverLow, queue.availableRing), (R.queueDeviceLow, queue.usedRing)] {
                write(low, UInt32(truncatingIfNeeded: address.rawValue))
                write(low + 4, UInt32(truncatingIfNeeded: address.rawValue >> 32))
            }
            write(R.queueReady, 1)
        }
        write(R.status, 15)
    }

    func resetDevice() { write(R.status, 0) }

    var status: UInt32 { read(R.status) }

    /// Makes `count` rx buffers available and notifies the rx queue.
    func postRx(_ count: Int, size: Int = VsockRig.rxBufferSize, split: Bool = false, kick: Bool = true) throws {
        for _ in 0..<count {
            let address = try rx.allocate(size, fill: 0xee)
            let head: UInt16
            if split {
                // The header and the data in separate buffers, as some drivers post them.
                head = try rx.addChain([
                    .writable(address, VsockHeader.size),
                    .writable(GuestAddress(address.rawValue + UInt64(VsockHeader.size)), size - VsockHeader.size),
                ])
            } else {
                head = try rx.addChain([.writable(address, size)])
            }
            rxBuffers[UInt32(head)] = address
            try rx.makeAvailable(head)
        }
        if kick { transport.processQueue(0) }
    }

    /// The packets the device put on the rx queue since the last call.
    func received() throws -> [VsockPacket] {
        try rx.takeUsed().map { used in
            let address = try #require(rxBuffers[used.id], "used rx element \(used.id) was never posted")
            let bytes = try memory.read(at: address, count: Int(used.length))
            let header = try #require(bytes.withUnsafeBytes { VsockHeader(decoding: $0) }, "rx packet of \(used.length) bytes")
            return VsockPacket(header: header, payload: Array(bytes[VsockHeader.size...]))
        }
    }

    /// Receives, then posts as many rx buffers again.
    func receiveAndRepost() throws -> [VsockPacket] {
        let packets = try received()
        if !packets.isEmpty { try postRx(packets.count) }
        return packets
    }

    /// A packet from the guest, as Linux builds it: the guest's CID as
    /// source, the host as destination, `len` equal to the payload.
    static func header(
        _ op: VsockOp, guestPort: UInt32, hostPort: UInt32, length: Int = 0, flags: UInt32 = 0,
        bufferAllocation: UInt32 = 256 * 1024, forwardCount: UInt32 = 0
    ) -> VsockHeader {
        VsockHeader(
            sourceCID: guestCID, destinationCID: VsockWire.hostCID, sourcePort: guestPort, destinationPort: hostPort,
            length: UInt32(length), op: op.rawValue, flags: flags, bufferAllocation: bufferAllocation,
            forwardCount: forwardCount)
    }

    /// Puts one packet on the tx queue and notifies it. `split` puts the
    /// header and the payload in two descriptors.
    @discardableResult
    func send(_ header: VsockHeader, _ payload: [UInt8] = [], split: Bool = false) throws -> Bool {
        try queueTx(header, payload, split: split)
        return transport.processQueue(1)
    }

    func send(_ header: VsockHeader, _ text: String) throws {
        try send(header, Array(text.utf8))
    }

    func queueTx(_ header: VsockHeader, _ payload: [UInt8] = [], split: Bool = false) throws {
        let head: UInt16
        if split, !payload.isEmpty {
            head = try tx.addChain([
                .readable(try tx.allocate(bytes: header.bytes), VsockHeader.size),
                .readable(try tx.allocate(bytes: payload), payload.count),
            ])
        } else {
            let bytes = header.bytes + payload
            head = try tx.addChain([.readable(try tx.allocate(bytes: bytes), bytes.count)])
        }
        try tx.makeAvailable(head)
    }

    /// Raw bytes on the tx queue (a hostile chain).
    func sendRaw(_ bytes: [UInt8]) throws {
        try tx.makeAvailable(try tx.addChain([.readable(try tx.allocate(bytes: bytes), bytes.count)]))
        transport.processQueue(1)
    }

    func postEventBuffer() throws {
        let address = try event.allocate(4, fill: 0xff)
        let head = try event.addChain([.writable(address, 4)])
        eventBuffers[UInt32(head)] = address
        try event.makeAvailable(head)
        transport.processQueue(2)
    }

    /// Event ids the device reported.
    func receivedEvents() throws -> [UInt32] {
        try event.takeUsed().map { used in
            #expect(used.length == 4)
            let address = try #require(eventBuffers[used.id])
            return try memory.load(UInt32.self, at: address)
        }
    }

    // MARK: Scenarios

    /// A host program connects and asks for `guestPort`; the guest gets the
    /// REQUEST. Returns the host socket and the REQUEST.
    func hostConnects(to guestPort: UInt32, line: String? = nil) throws -> (fd: Int32, request: VsockPacket) {
        let fd = host.hostConnects(sending: line ?? "CONNECT \(guestPort)\n")
        events.fire(VsockFakeHost.listener)
        let packets = try receiveAndRepost()
        try #require(packets.count == 1, "expected one REQUEST, got \(packets)")
        let request = packets[0]
        #expect(request.op == .request)
        #expect(request.header.destinationPort == guestPort)
        return (fd, request)
    }

    /// A host-initiated connection the guest accepted; the OK line is taken.
    func establishedFromHost(guestPort: UInt32 = 5000, guestBuffer: UInt32 = 256 * 1024) throws -> (fd: Int32, hostPort: UInt32) {
        let (fd, request) = try hostConnects(to: guestPort)
        let hostPort = request.header.sourcePort
        try send(Self.header(.response, guestPort: guestPort, hostPort: hostPort, bufferAllocation: guestBuffer))
        #expect(String(decoding: host.takeOutbound(fd), as: UTF8.self) == "OK \(hostPort)\n")
        return (fd, hostPort)
    }

    /// A guest-initiated connection to host `port`, answered RESPONSE.
    func establishedFromGuest(hostPort: UInt32 = 6000, guestPort: UInt32 = 40000, guestBuffer: UInt32 = 256 * 1024) throws -> Int32 {
        host.listen(onPort: hostPort)
        try send(Self.header(.request, guestPort: guestPort, hostPort: hostPort, bufferAllocation: guestBuffer))
        let packets = try receiveAndRepost()
        #expect(packets.map(\.op) == [.response], "\(packets)")
        return try #require(host.connection(toPort: hostPort))
    }

    /// The host peer sent bytes: the loop says the socket is readable.
    func hostSends(_ fd: Int32, _ bytes: [UInt8]) {
        host.send(fd, bytes)
        events.fire(fd, .readable)
    }

    func hostSends(_ fd: Int32, _ text: String) { hostSends(fd, Array(text.utf8)) }
}

// MARK: - Tests

@Suite("virtio-vsock")
struct VirtioVsockTests {
    typealias H = VsockRig
    static func bytes(_ count: Int, seed: Int = 0) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ seed) } }

    // MARK: Device identity

    @Test("device ID 19, three queues, VERSION_1 and F_STREAM, guest_cid as a little-endian u64 in the config space")
    func identity() throws {
        let rig = try VsockRig()
        #expect(rig.read(MMIODriver.Register.deviceID) == 19)
        #expect(rig.device.queueMaxSizes.count == 3)
        #expect(rig.device.offeredFeatures & VirtioFeature.version1 != 0)
        #expect(rig.device.offeredFeatures & VsockWire.featureStream != 0)
        #expect(rig.status == 15, "the full feature set is accepted")
        #expect(rig.read(0x100) == 3)
        #expect(rig.read(0x104) == 0)
        let big = VirtioVsock(guestCID: 0x1_2345_6789, host: VsockFakeHost())
        var bytes = [UInt8](repeating: 0xaa, count: 10)
        bytes.withUnsafeMutableBytes { big.readConfig(at: 0, into: $0) }
        #expect(bytes == [0x89, 0x67, 0x45, 0x23, 0x01, 0, 0, 0, 0, 0], "bytes beyond guest_cid read as zero")
        var one: [UInt8] = [0]
        one.withUnsafeMutableBytes { big.readConfig(at: 2, into: $0) }
        #expect(one == [0x45], "a byte read of the middle of guest_cid")
    }

    @Test("the header is 44 little-endian bytes in the spec's order")
    func headerLayout() throws {
        let header = VsockHeader(
            sourceCID: 0x0102_0304_0506_0708, destinationCID: 2, sourcePort: 0x1112_1314, destinationPort: 0x2122_2324,
            length: 0x3132_3334, type: 1, op: 5, flags: 0x4142_4344, bufferAllocation: 0x5152_5354, forwardCount: 0x6162_6364)
        let bytes = header.bytes
        #expect(bytes.count == 44)
        #expect(Array(bytes[0..<8]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(bytes[16..<20]) == [0x14, 0x13, 0x12, 0x11])
        #expect(Array(bytes[24..<28]) == [0x34, 0x33, 0x32, 0x31])
        #expect(Array(bytes[28..<32]) == [1, 0, 5, 0])
        #expect(Array(bytes[40..<44]) == [0x64, 0x63, 0x62, 0x61])
        #expect(bytes.withUnsafeBytes { VsockHeader(decoding: $0) } == header)
        #expect([UInt8](repeating: 0, count: 43).withUnsafeBytes { VsockHeader(decoding: $0) } == nil)
    }

    @Test("CONNECT lines: the word in any case, blanks, an optional CR; anything else is refused")
    func connectLineParsing() {
        let parse = { (text: String) in VirtioVsock.parseConnectLine(Array(text.utf8)) }
        #expect(parse("CONNECT 5000") == 5000)
        #expect(parse("connect 52\r") == 52)
        #expect(parse("  Connect\t4294967295 ") == 4_294_967_295)
        #expect(parse("CONNECT") == nil)
        #expect(parse("CONNECT 4294967296") == nil)
        #expect(parse("CONNECT -1") == nil)
        #expect(parse("CONNECT 5000 6000") == nil)
        #expect(parse("CONNECT +5") == nil)
        #expect(parse("LISTEN 5000") == nil)
        #expect(VirtioVsock.parseConnectLine([0x43, 0xff, 0x20, 0x31]) == nil, "not UTF-8")
    }

    // MARK: Host-initiated connections

    @Test("a host program's CONNECT becomes a REQUEST; RESPONSE writes OK <port> and bytes flow both ways")
    func hostInitiated() throws {
        let rig = try VsockRig()
        #expect(rig.events.watchedDescriptors == [VsockFakeHost.listener], "the listener is watched once the device runs")
        let (fd, request) = try rig.hostConnects(to: 5000)
        #expect(request.header.sourceCID == 2)
        #expect(request.header.destinationCID == 3)
        #expect(request.header.sourcePort == VirtioVsock.firstHostPort)
        #expect(request.header.type == VsockWire.typeStream)
        #expect(request.header.bufferAllocation == 64 * 1024)
        #expect(request.header.forwardCount == 0)
        #expect(request.payload.isEmpty)
        #expect(rig.host.outbound(fd).isEmpty, "nothing is written before the guest answers")

        let hostPort = request.header.sourcePort
        try rig.send(H.header(.response, guestPort: 5000, hostPort: hostPort))
        #expect(rig.host.outbound(fd) == "OK \(hostPort)\n")

        try rig.send(H.header(.readWrite, guestPort: 5000, hostPort: hostPort, length: 5), "hello")
        #expect(rig.host.outbound(fd) == "OK \(hostPort)\nhello")

        rig.hostSends(fd, "world!")
        let packets = try rig.received()
        #expect(packets.count == 1)
        #expect(packets.first?.op == .readWrite)
        #expect(packets.first?.text == "world!")
        #expect(packets.first?.header.length == 6)
        #expect(packets.first?.header.forwardCount == 5, "every packet carries what reached the host")
        #expect(packets.first?.header.sourcePort == hostPort)
        #expect(packets.first?.header.destinationPort == 5000)
        // Metrics: the payload bytes each way, not the OK line or headers.
        #expect(rig.device.counters["tx_bytes"] == 5)
        #expect(rig.device.counters["rx_bytes"] == 6)
        #expect(rig.device.counters["conns_added"] == 1)
        #expect(rig.device.counters["tx_packets"] == 2, "RESPONSE and RW")
    }

    @Test("the second host connection gets the next host port; both run at once")
    func hostPortsCountUp() throws {
        let rig = try VsockRig()
        let first = try rig.establishedFromHost(guestPort: 5000)
        let second = try rig.establishedFromHost(guestPort: 5000)
        #expect(second.hostPort == first.hostPort + 1)
        rig.hostSends(first.fd, "one")
        rig.hostSends(second.fd, "two")
        let packets = try rig.received()
        #expect(Set(packets.map { "\($0.header.sourcePort):\($0.text)" }) == ["\(first.hostPort):one", "\(second.hostPort):two"])
    }

    @Test("a guest RST to the REQUEST (nothing listens on its port) closes the host socket without OK")
    func hostInitiatedRefused() throws {
        let rig = try VsockRig()
        let (fd, request) = try rig.hostConnects(to: 5001)
        try rig.send(H.header(.reset, guestPort: 5001, hostPort: request.header.sourcePort))
        #expect(rig.host.isClosed(fd))
        #expect(rig.host.outbound(fd).isEmpty)
        #expect(try rig.received().isEmpty, "an RST is not answered")
        #expect(rig.device.statistics.connections == 0)
        #expect(rig.events.watchedDescriptors == [VsockFakeHost.listener], "the socket's subscription is gone")
    }

    @Test("malformed CONNECT lines close the host socket and never reach the guest", arguments: [
        "HELLO 5000\n", "CONNECT abc\n", "CONNECT 99999999999\n", "CONNECT\n", "CONNECT 1 2\n",
    ])
    func malformedConnectLine(line: String) throws {
        let rig = try VsockRig()
        let fd = rig.host.hostConnects(sending: line)
        rig.events.fire(VsockFakeHost.listener)
        #expect(rig.host.isClosed(fd))
        #expect(try rig.received().isEmpty)
        #expect(rig.device.statistics.pendingHostConnections == 0)
    }

    @Test("a CONNECT line longer than the limit, or cut short by end-of-stream, closes the socket")
    func longOrTruncatedLine() throws {
        let rig = try VsockRig()
        let long = rig.host.hostConnects(sending: "CONNECT 5000" + String(repeating: " ", count: 40))
        rig.events.fire(VsockFakeHost.listener)
        #expect(rig.host.isClosed(long))

        let cut = rig.host.hostConnects(sending: "CONNECT 50")
        rig.events.fire(VsockFakeHost.listener)
        #expect(!rig.host.isClosed(cut), "the rest of the line may still come")
        rig.host.change(cut) { $0.inboundEnded = true }
        rig.events.fire(cut)
        #expect(rig.host.isClosed(cut))
        #expect(try rig.received().isEmpty)
    }

    @Test("a CONNECT line that arrives in pieces is put together")
    func lineInPieces() throws {
        let rig = try VsockRig()
        let fd = rig.host.hostConnects(sending: "CONN")
        rig.events.fire(VsockFakeHost.listener)
        #expect(try rig.received().isEmpty)
        rig.hostSends(fd, "ECT 77\n")
        let packets = try rig.received()
        #expect(packets.map(\.op) == [.request])
        #expect(packets.first?.header.destinationPort == 77)
    }

    @Test("a host program that sends no line in time is closed")
    func slowConnectLine() throws {
        let rig = try VsockRig()
        let fd = rig.host.hostConnects(sending: "CONNECT 5")
        rig.events.fire(VsockFakeHost.listener)
        #expect(rig.events.timerCount == 1, "a timer watches the deadline")
        rig.clock.advance(4_000)
        rig.events.fireTimers()
        #expect(!rig.host.isClosed(fd))
        rig.clock.advance(1_001)
        rig.events.fireTimers()
        #expect(rig.host.isClosed(fd))
        #expect(rig.device.statistics.pendingHostConnections == 0)
    }

    @Test("a guest that never answers the REQUEST gets RST after the time limit and the host socket is closed")
    func responseTimeout() throws {
        let rig = try VsockRig()
        let (fd, request) = try rig.hostConnects(to: 5000)
        rig.clock.advance(2_001)
        rig.events.fireTimers()
        #expect(rig.host.isClosed(fd))
        let packets = try rig.received()
        #expect(packets.map(\.op) == [.reset])
        #expect(packets.first?.header.sourcePort == request.header.sourcePort)
        #expect(packets.first?.header.destinationPort == 5000)
    }

    @Test("bytes the host sent right after its CONNECT line reach the guest after RESPONSE, after OK")
    func bytesAfterTheLine() throws {
        let rig = try VsockRig()
        let (fd, request) = try rig.hostConnects(to: 5000, line: "CONNECT 5000\nearly bytes")
        try rig.send(H.header(.response, guestPort: 5000, hostPort: request.header.sourcePort))
        #expect(rig.host.outbound(fd) == "OK \(request.header.sourcePort)\n")
        let packets = try rig.received()
        #expect(packets.map(\.text) == ["early bytes"])
    }

    @Test("host connections wait in the backlog until the device runs; a reset closes them and stops the listener")
    func listenerFollowsActivation() throws {
        let rig = try VsockRig()
        let (fd, _) = try rig.hostConnects(to: 5000)
        rig.resetDevice()
        #expect(rig.host.isClosed(fd), "a reset drops every connection")
        #expect(rig.events.watchedDescriptors.isEmpty)
        #expect(rig.events.timerCount == 0)
        let waiting = rig.host.hostConnects(sending: "CONNECT 5000\n")
        #expect(!rig.host.isClosed(waiting))
        try rig.start()
        #expect(rig.events.watchedDescriptors == [VsockFakeHost.listener])
        rig.events.fire(VsockFakeHost.listener)
        try rig.postRx(4)
        #expect(try rig.received().map(\.op) == [.request])
    }

    @Test("too many host programs without a CONNECT line: the newest is closed at once")
    func pendingHostConnectionsBounded() throws {
        var limits = VsockLimits()
        limits.maxPendingHostConnections = 2
        let rig = try VsockRig(limits: limits)
        let fds = (0..<3).map { _ in rig.host.hostConnects(sending: "CONN") }
        rig.events.fire(VsockFakeHost.listener)
        #expect(fds.map { rig.host.isClosed($0) } == [false, false, true])
    }

    @Test("accept(2) failing pauses the listener instead of spinning, and it comes back")
    func acceptFailure() throws {
        let rig = try VsockRig()
        rig.host.state.withLock { $0.acceptError = 24 }
        rig.events.fire(VsockFakeHost.listener)
        #expect(rig.events.watchedDescriptors.isEmpty)
        rig.host.state.withLock { $0.acceptError = nil }
        rig.clock.advance(200)
        rig.events.fireTimers()
        #expect(rig.events.watchedDescriptors == [VsockFakeHost.listener])
    }

    // MARK: Guest-initiated connections

    @Test("a guest REQUEST to CID 2 port P connects to the host listener for P and gets RESPONSE")
    func guestInitiated() throws {
        let rig = try VsockRig()
        rig.host.listen(onPort: 6000)
        try rig.send(H.header(.request, guestPort: 40000, hostPort: 6000))
        #expect(rig.host.state.withLock { $0.connects } == [6000])
        let packets = try rig.received()
        #expect(packets.map(\.op) == [.response])
        let response = try #require(packets.first).header
        #expect(response.sourceCID == 2 && response.destinationCID == 3)
        #expect(response.sourcePort == 6000 && response.destinationPort == 40000)
        #expect(response.bufferAllocation == 64 * 1024)
        let fd = try #require(rig.host.connection(toPort: 6000))
        #expect(rig.events.interest(fd) == [.readable, .edgeTriggered])

        try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 17), "SWIFTVM-VSOCK-OUT")
        #expect(rig.host.outbound(fd) == "SWIFTVM-VSOCK-OUT")
        rig.hostSends(fd, "reply")
        #expect(try rig.received().map(\.text) == ["reply"])
    }

    @Test("a guest REQUEST nobody listens for gets RST")
    func guestInitiatedRefused() throws {
        let rig = try VsockRig()
        try rig.send(H.header(.request, guestPort: 40001, hostPort: 6001))
        let packets = try rig.received()
        #expect(packets.map(\.op) == [.reset])
        #expect(packets.first?.header.sourcePort == 6001)
        #expect(packets.first?.header.destinationPort == 40001)
        #expect(rig.device.statistics.connections == 0)
    }

    @Test("beyond maxConnections a guest REQUEST gets RST and a host CONNECT is closed")
    func connectionLimit() throws {
        var limits = VsockLimits()
        limits.maxConnections = 2
        let rig = try VsockRig(limits: limits)
        _ = try rig.establishedFromGuest(hostPort: 6000, guestPort: 1)
        _ = try rig.establishedFromGuest(hostPort: 6000, guestPort: 2)
        try rig.send(H.header(.request, guestPort: 3, hostPort: 6000))
        #expect(try rig.received().map(\.op) == [.reset])
        let fd = rig.host.hostConnects(sending: "CONNECT 5000\n")
        rig.events.fire(VsockFakeHost.listener)
        #expect(rig.host.isClosed(fd))
    }

    // MARK: Unknown connections and bad packets

    @Test("a packet for no connection gets RST with the ports swapped; an RST gets nothing", arguments: [
        VsockOp.readWrite, .shutdown, .creditUpdate, .creditRequest, .response,
    ])
    func unknownConnection(op: VsockOp) throws {
        let rig = try VsockRig()
        let payload: [UInt8] = op == .readWrite ? Array("data".utf8) : []
        try rig.send(H.header(op, guestPort: 7777, hostPort: 7778, length: payload.count), payload)
        let packets = try rig.received()
        #expect(packets.map(\.op) == [.reset])
        #expect(packets.first?.header.sourcePort == 7778)
        #expect(packets.first?.header.destinationPort == 7777)
        #expect(packets.first?.header.destinationCID == 3)
        try rig.send(H.header(.reset, guestPort: 7777, hostPort: 7778))
        #expect(try rig.received().isEmpty)
    }

    @Test("a packet to a CID other than the host's, or of another socket type, gets RST")
    func noRoute() throws {
        let rig = try VsockRig()
        var toOther = H.header(.request, guestPort: 1, hostPort: 2)
        toOther.destinationCID = 7
        try rig.send(toOther)
        var seqpacket = H.header(.request, guestPort: 3, hostPort: 4)
        seqpacket.type = 2
        try rig.send(seqpacket)
        #expect(try rig.received().map(\.op) == [.reset, .reset])
        #expect(rig.host.state.withLock { $0.connects }.isEmpty)
    }

    @Test("a packet that does not come from the guest's CID is dropped without an answer")
    func spoofedSource() throws {
        let rig = try VsockRig()
        var spoofed = H.header(.request, guestPort: 1, hostPort: 6000)
        spoofed.sourceCID = 2
        rig.host.listen(onPort: 6000)
        try rig.send(spoofed)
        #expect(try rig.received().isEmpty)
        #expect(rig.host.state.withLock { $0.connects }.isEmpty)
        #expect(rig.device.statistics.malformedPackets == 1)
    }

    @Test("bad lengths are dropped; on a connection they reset it", arguments: [
        (declared: 10, actual: 5), (declared: 3, actual: 5), (declared: 70_000, actual: 70_000), (declared: Int(UInt32.max), actual: 8),
    ])
    func badLengths(declared: Int, actual: Int) throws {
        let rig = try VsockRig()
        // For no connection: dropped and answered with RST.
        try rig.send(H.header(.readWrite, guestPort: 9, hostPort: 10, length: declared), VirtioVsockTests.bytes(actual))
        #expect(try rig.received().map(\.op) == [.reset])
        // On a connection: the stream lost bytes, so it is reset.
        let fd = try rig.establishedFromGuest()
        try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: declared), VirtioVsockTests.bytes(actual))
        #expect(try rig.received().map(\.op) == [.reset])
        #expect(rig.host.isClosed(fd))
        #expect(rig.host.outbound(fd).isEmpty)
        #expect(rig.device.statistics.malformedPackets == 2)
        #expect(rig.status & 64 == 0, "a bad packet does not break the device")
    }

    @Test("a tx chain shorter than a header is dropped; the device goes on")
    func shortChain() throws {
        let rig = try VsockRig()
        try rig.sendRaw([1, 2, 3])
        #expect(try rig.tx.takeUsed().count == 1, "the buffer goes back")
        #expect(try rig.received().isEmpty)
        #expect(rig.device.statistics.malformedPackets == 1)
        _ = try rig.establishedFromGuest()
    }

    @Test("header and payload in separate descriptors, and rx buffers split in two, work alike")
    func splitBuffers() throws {
        let rig = try VsockRig(rxBuffers: 0)
        try rig.postRx(8, split: true)
        let fd = try rig.establishedFromGuest()
        try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 6), Array("abcdef".utf8), split: true)
        #expect(rig.host.outbound(fd) == "abcdef")
        rig.hostSends(fd, "ghijk")
        #expect(try rig.received().map(\.text) == ["ghijk"])
    }

    // MARK: Protocol errors by state

    @Test("in an established connection REQUEST, RESPONSE and unknown ops reset it", arguments: [UInt16(1), 2, 99])
    func establishedProtocolErrors(op: UInt16) throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest()
        var header = H.header(.request, guestPort: 40000, hostPort: 6000)
        header.op = op
        try rig.send(header)
        #expect(try rig.received().map(\.op) == [.reset])
        #expect(rig.host.isClosed(fd))
    }

    @Test("while the REQUEST is unanswered, RW, SHUTDOWN and another REQUEST reset the connection; CREDIT packets are fine", arguments: [
        VsockOp.readWrite, .shutdown, .request,
    ])
    func awaitingResponseErrors(op: VsockOp) throws {
        let rig = try VsockRig()
        let (fd, request) = try rig.hostConnects(to: 5000)
        let hostPort = request.header.sourcePort
        try rig.send(H.header(.creditUpdate, guestPort: 5000, hostPort: hostPort))
        try rig.send(H.header(.creditRequest, guestPort: 5000, hostPort: hostPort))
        #expect(try rig.received().isEmpty)
        #expect(!rig.host.isClosed(fd))
        let payload: [UInt8] = op == .readWrite ? [1] : []
        try rig.send(H.header(op, guestPort: 5000, hostPort: hostPort, length: payload.count, flags: 3), payload)
        #expect(try rig.received().map(\.op) == [.reset])
        #expect(rig.host.isClosed(fd))
        #expect(rig.host.outbound(fd).isEmpty)
    }

    @Test("a REQUEST for a connection that exists resets it")
    func duplicateRequest() throws {
        let rig = try VsockRig()
        let (fd, hostPort) = try rig.establishedFromHost()
        try rig.send(H.header(.request, guestPort: 5000, hostPort: hostPort))
        #expect(try rig.received().map(\.op) == [.reset])
        #expect(rig.host.isClosed(fd))
    }

    @Test("a guest RST on an established connection closes the host socket and is not answered")
    func guestReset() throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest()
        try rig.send(H.header(.reset, guestPort: 40000, hostPort: 6000))
        #expect(rig.host.isClosed(fd))
        #expect(try rig.received().isEmpty)
        try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 1), [1])
        #expect(try rig.received().map(\.op) == [.reset], "data after RST is for no connection")
    }

    // MARK: Shutdown

    @Test("guest SHUTDOWN(SEND) half-closes the host socket for writing; host data still flows to the guest")
    func guestShutdownSend() throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest()
        try rig.send(H.header(.shutdown, guestPort: 40000, hostPort: 6000, flags: VsockWire.shutdownSend))
        #expect(rig.host.socket(fd)?.shutWrite == true)
        #expect(rig.host.socket(fd)?.shutRead == false)
        rig.hostSends(fd, "still here")
        #expect(try rig.received().map(\.text) == ["still here"])
        try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 1), [1])
        #expect(try rig.received().map(\.op) == [.reset], "RW after SHUTDOWN(SEND) breaks the protocol")
        #expect(rig.host.isClosed(fd))
    }

    @Test("guest SHUTDOWN(SEND) waits until what the guest sent reached a slow host")
    func shutdownAfterFlush() throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest()
        rig.host.change(fd) { $0.writeRoom = 2 }
        try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 5), "abcde")
        try rig.send(H.header(.shutdown, guestPort: 40000, hostPort: 6000, flags: VsockWire.shutdownSend))
        #expect(rig.host.socket(fd)?.shutWrite == false)
        rig.host.change(fd) { $0.writeRoom = nil }
        rig.events.fire(fd, .writable)
        #expect(rig.host.outbound(fd) == "abcde")
        #expect(rig.host.socket(fd)?.shutWrite == true)
    }

    @Test("guest SHUTDOWN(RECEIVE) half-closes the host socket for reading and the device stops reading it")
    func guestShutdownReceive() throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest()
        try rig.send(H.header(.shutdown, guestPort: 40000, hostPort: 6000, flags: VsockWire.shutdownReceive))
        #expect(rig.host.socket(fd)?.shutRead == true)
        rig.hostSends(fd, "unwanted")
        #expect(try rig.received().isEmpty)
        try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 3), "abc")
        #expect(rig.host.outbound(fd) == "abc", "the other direction goes on")
    }

    @Test("SHUTDOWN with both flags ends the connection with RST once the host has everything")
    func guestShutdownBoth() throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest()
        rig.host.change(fd) { $0.writeRoom = 0 }
        try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 4), "last")
        try rig.send(H.header(.shutdown, guestPort: 40000, hostPort: 6000, flags: VsockWire.shutdownBoth))
        #expect(try rig.received().isEmpty, "the data has not reached the host yet")
        #expect(!rig.host.isClosed(fd))
        rig.host.change(fd) { $0.writeRoom = nil }
        rig.events.fire(fd, .writable)
        #expect(rig.host.outbound(fd) == "last")
        #expect(rig.host.isClosed(fd))
        #expect(try rig.received().map(\.op) == [.reset])
        #expect(rig.device.statistics.connections == 0)
    }

    @Test("host end-of-stream: the guest gets SHUTDOWN(SEND) after the data; once the guest is done too, RST")
    func hostEndOfStream() throws {
        let rig = try VsockRig()
        let (fd, hostPort) = try rig.establishedFromHost()
        rig.host.send(fd, "bye")
        rig.host.change(fd) { $0.inboundEnded = true }
        rig.events.fire(fd, .readable)
        let packets = try rig.receiveAndRepost()
        #expect(packets.map(\.op) == [.readWrite, .shutdown])
        #expect(packets.first?.text == "bye")
        #expect(packets.last?.header.flags == VsockWire.shutdownSend)
        #expect(!rig.host.isClosed(fd), "the guest may still send (half-close)")
        try rig.send(H.header(.readWrite, guestPort: 5000, hostPort: hostPort, length: 5), "after")
        #expect(rig.host.outbound(fd) == "after")
        try rig.send(H.header(.shutdown, guestPort: 5000, hostPort: hostPort, flags: VsockWire.shutdownSend))
        #expect(rig.host.socket(fd)?.shutWrite == true)
        #expect(rig.host.isClosed(fd))
        #expect(try rig.received().map(\.op) == [.reset])
    }

    @Test("host end-of-stream after the guest shut down its sending side closes with RST at once")
    func hostEndAfterGuestSend() throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest()
        try rig.send(H.header(.shutdown, guestPort: 40000, hostPort: 6000, flags: VsockWire.shutdownSend))
        rig.host.change(fd) { $0.inboundEnded = true }
        rig.events.fire(fd, .readable)
        #expect(try rig.received().map(\.op) == [.reset])
        #expect(rig.host.isClosed(fd))
    }

    @Test("a host peer that closes early (write fails, read fails, or hangs up before the answer) means RST")
    func hostClosesEarly() throws {
        let rig = try VsockRig()
        let writer = try rig.establishedFromGuest(guestPort: 1)
        rig.host.change(writer) { $0.writeError = 32 }
        try rig.send(H.header(.readWrite, guestPort: 1, hostPort: 6000, length: 2), "hi")
        #expect(try rig.receiveAndRepost().map(\.op) == [.reset])
        #expect(rig.host.isClosed(writer))

        let reader = try rig.establishedFromGuest(guestPort: 2)
        rig.host.change(reader) { $0.readError = 104 }
        rig.events.fire(reader, .readable)
        #expect(try rig.receiveAndRepost().map(\.op) == [.reset])
        #expect(rig.host.isClosed(reader))

        let (waiting, _) = try rig.hostConnects(to: 5000)
        rig.events.fire(waiting, [.readable, .hangup])
        #expect(rig.host.isClosed(waiting))
        #expect(try rig.received().map(\.op) == [.reset], "the guest already has the REQUEST")
    }

    // MARK: Credit, host to guest

    @Test("the device never sends the guest more than its credit, asks for more once, and goes on after CREDIT_UPDATE")
    func guestCreditRespected() throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest(guestBuffer: 10)
        rig.hostSends(fd, VirtioVsockTests.bytes(25))
        var packets = try rig.receiveAndRepost()
        #expect(packets.map(\.op) == [.readWrite, .creditRequest])
        #expect(packets.first?.payload == VirtioVsockTests.bytes(10))
        rig.events.fire(fd, .readable)
        #expect(try rig.received().isEmpty, "no credit, no data, and no second CREDIT_REQUEST")

        try rig.send(H.header(.creditUpdate, guestPort: 40000, hostPort: 6000, bufferAllocation: 10, forwardCount: 10))
        packets = try rig.receiveAndRepost()
        #expect(packets.first?.payload == Array(VirtioVsockTests.bytes(25)[10..<20]))
        // A bigger buffer in any packet also counts.
        try rig.send(H.header(.creditUpdate, guestPort: 40000, hostPort: 6000, bufferAllocation: 1000, forwardCount: 20))
        packets = try rig.received()
        #expect(packets.flatMap(\.payload) == Array(VirtioVsockTests.bytes(25)[20...]))
    }

    @Test("a guest fwd_cnt that claims more than it was sent gives no credit")
    func bogusForwardCount() throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest(guestBuffer: 100)
        try rig.send(H.header(.creditUpdate, guestPort: 40000, hostPort: 6000, bufferAllocation: 100, forwardCount: 5000))
        rig.hostSends(fd, "x")
        #expect(try rig.received().map(\.op) == [.creditRequest])
    }

    @Test("one packet carries at most the rx buffer, and data is read straight into it")
    func dataFillsBuffers() throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest()
        let data = VirtioVsockTests.bytes(10_000)
        rig.hostSends(fd, data)
        let packets = try rig.received()
        #expect(packets.map(\.payload.count) == [4096, 4096, 1808])
        #expect(packets.flatMap(\.payload) == data)
        #expect(packets.map(\.header.length) == [4096, 4096, 1808])
    }

    @Test("host data waits for rx buffers and continues when the guest posts some")
    func waitsForRxBuffers() throws {
        let rig = try VsockRig(rxBuffers: 0)
        rig.host.listen(onPort: 6000)
        try rig.send(H.header(.request, guestPort: 40000, hostPort: 6000))
        let fd = try #require(rig.host.connection(toPort: 6000))
        rig.hostSends(fd, "queued")
        #expect(try rig.received().isEmpty)
        try rig.postRx(1)
        #expect(try rig.received().map(\.op) == [.response], "control packets go first")
        try rig.postRx(1)
        #expect(try rig.received().map(\.text) == ["queued"])
    }

    @Test("an rx buffer too small for a header comes back empty; one with room for a header only carries credit")
    func tinyRxBuffers() throws {
        let rig = try VsockRig(rxBuffers: 0)
        let fd = try rig.establishedFromGuestWithoutBuffers()
        try rig.postRx(1, size: 10)
        #expect(try rig.rx.takeUsed().isEmpty, "rx buffers are taken only for a packet")
        rig.hostSends(fd, "data")
        #expect(try rig.rx.takeUsed().map(\.length) == [0], "the driver broke the rules; the buffer comes back empty")
        #expect(rig.device.statistics.malformedPackets == 1)
        try rig.postRx(1, size: VsockHeader.size)
        #expect(try rig.received().map(\.op) == [.creditUpdate])
        try rig.postRx(1)
        #expect(try rig.received().map(\.text) == ["data"])
    }

    // MARK: Credit, guest to host

    @Test("a slow host peer: guest data waits up to the advertised credit; one byte more resets the connection")
    func slowHostBoundedMemory() throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest()
        rig.host.change(fd) { $0.writeRoom = 0 }
        for chunk in 0..<16 {
            try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 4096), VirtioVsockTests.bytes(4096, seed: chunk))
        }
        #expect(rig.device.statistics.bytesWaitingForHost == 64 * 1024)
        #expect(rig.events.interest(fd) == [.readable, .writable, .edgeTriggered], "writable is watched while data waits")
        #expect(try rig.received().isEmpty)
        try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 1), [0])
        #expect(try rig.received().map(\.op) == [.reset])
        #expect(rig.host.isClosed(fd))
        #expect(rig.device.statistics.bytesWaitingForHost == 0, "the memory went with the connection")
    }

    @Test("as a slow host drains, the guest gets CREDIT_UPDATE with the new fwd_cnt; writable is unwatched when empty")
    func creditUpdateAfterDraining() throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest()
        rig.host.change(fd) { $0.writeRoom = 0 }
        var sent: [UInt8] = []
        for chunk in 0..<16 {
            let data = VirtioVsockTests.bytes(4096, seed: chunk)
            sent += data
            try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 4096), data)
        }
        rig.host.change(fd) { $0.writeRoom = 20_000 }
        rig.events.fire(fd, .writable)
        #expect(try rig.received().isEmpty, "20000 bytes are below the update threshold")
        rig.host.change(fd) { $0.writeRoom = nil }
        rig.events.fire(fd, .writable)
        let packets = try rig.received()
        #expect(packets.map(\.op) == [.creditUpdate])
        #expect(packets.first?.header.forwardCount == 65536)
        #expect(packets.first?.header.bufferAllocation == 65536)
        #expect(rig.host.takeOutbound(fd) == sent)
        #expect(rig.events.interest(fd) == [.readable, .edgeTriggered])
        // The guest has credit again.
        try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 4096), VirtioVsockTests.bytes(4096))
        #expect(!rig.host.isClosed(fd))
    }

    @Test("a fast host peer: the guest hears its fwd_cnt after every threshold of bytes")
    func creditUpdateFastHost() throws {
        let rig = try VsockRig()
        _ = try rig.establishedFromGuest()
        for _ in 0..<8 {
            try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 4096), VirtioVsockTests.bytes(4096))
        }
        let packets = try rig.received()
        #expect(packets.map(\.op) == [.creditUpdate])
        #expect(packets.first?.header.forwardCount == 32768)
    }

    @Test("CREDIT_REQUEST is answered with CREDIT_UPDATE")
    func creditRequestAnswered() throws {
        let rig = try VsockRig()
        let fd = try rig.establishedFromGuest()
        rig.host.change(fd) { $0.writeRoom = 3 }
        try rig.send(H.header(.readWrite, guestPort: 40000, hostPort: 6000, length: 5), "abcde")
        try rig.send(H.header(.creditRequest, guestPort: 40000, hostPort: 6000))
        let packets = try rig.received()
        #expect(packets.map(\.op) == [.creditUpdate])
        #expect(packets.first?.header.forwardCount == 3)
        #expect(packets.first?.header.bufferAllocation == 65536)
    }

    @Test("a slow host peer does not hold up the other connections")
    func slowPeerDoesNotWedge() throws {
        let rig = try VsockRig()
        let slow = try rig.establishedFromGuest(hostPort: 6000, guestPort: 1)
        let fast = try rig.establishedFromGuest(hostPort: 6000, guestPort: 2)
        rig.host.change(slow) { $0.writeRoom = 0 }
        for _ in 0..<16 {
            try rig.send(H.header(.readWrite, guestPort: 1, hostPort: 6000, length: 4096), VirtioVsockTests.bytes(4096))
        }
        try rig.send(H.header(.readWrite, guestPort: 2, hostPort: 6000, length: 4), "ping")
        #expect(rig.host.outbound(fast) == "ping")
        rig.hostSends(fast, "pong")
        #expect(try rig.received().map(\.text) == ["pong"])
        #expect(!rig.host.isClosed(slow))
    }

    // MARK: Many connections

    @Test("many connections at once: every one delivers, in turns, none starves")
    func manyConnections() throws {
        let rig = try VsockRig(rxBuffers: 0)
        rig.host.listen(onPort: 6000)
        let count = 100
        try rig.postRx(count)
        for port in 0..<UInt32(count) {
            try rig.send(H.header(.request, guestPort: 10_000 + port, hostPort: 6000))
        }
        #expect(try rig.received().count == count)
        let sockets = rig.host.state.withLock { s in s.sockets.filter { $0.value.port == 6000 }.map(\.key).sorted() }
        #expect(sockets.count == count)
        for fd in sockets {
            rig.host.send(fd, VirtioVsockTests.bytes(8192))
            rig.events.fire(fd, .readable)
        }
        // As many rx buffers as connections: one packet for each before any gets a second.
        try rig.postRx(count)
        let first = try rig.received()
        #expect(first.count == count)
        #expect(Set(first.map(\.header.destinationPort)).count == count)
        try rig.postRx(count)
        let second = try rig.received()
        #expect(Set(second.map(\.header.destinationPort)).count == count)
        #expect((first + second).allSatisfy { $0.payload == VirtioVsockTests.bytes(4096) || $0.payload == Array(VirtioVsockTests.bytes(8192)[4096...]) })
        try rig.postRx(count)
        #expect(try rig.received().isEmpty, "every connection sent all it had")
        #expect(rig.device.statistics.connections == count)
    }

    @Test("rx work beyond one pass continues in a posted pass; tx work beyond one pass says so")
    func boundedPasses() throws {
        let rig = try VsockRig(rxBuffers: 0)
        let pass = VirtioActivation.requestsPerPass
        for port in 0..<UInt32(pass) {
            try rig.queueTx(H.header(.readWrite, guestPort: port, hostPort: 1, length: 0))
        }
        #expect(rig.transport.processQueue(1) == true, "a full tx pass yields: more may be waiting")
        #expect(rig.transport.processQueue(1) == false)
        for port in 0..<UInt32(10) {
            try rig.queueTx(H.header(.readWrite, guestPort: UInt32(pass) + port, hostPort: 1, length: 0))
        }
        #expect(rig.transport.processQueue(1) == false)
        #expect(rig.device.statistics.queuedResets == pass + 10)

        try rig.postRx(pass)
        var packets = try rig.received()
        #expect(packets.count == pass, "one rx pass fills at most requestsPerPass buffers")
        #expect(rig.events.postedCount == 1, "the rest is posted to the loop")
        try rig.postRx(10, kick: false)
        rig.events.runPosted()
        packets += try rig.received()
        #expect(packets.count == pass + 10)
        #expect(packets.allSatisfy { $0.op == .reset })
        #expect(packets.map(\.header.destinationPort) == (0..<UInt32(pass + 10)).map { $0 })
    }

    @Test("resets wait in a bounded queue when the guest posts no rx buffers")
    func resetQueueBounded() throws {
        var limits = VsockLimits()
        limits.maxQueuedResets = 4
        let rig = try VsockRig(limits: limits, rxBuffers: 0)
        for port in 0..<UInt32(10) {
            try rig.send(H.header(.readWrite, guestPort: port, hostPort: 1, length: 0))
        }
        #expect(rig.device.statistics.queuedResets == 4)
        #expect(rig.device.statistics.droppedResets == 6)
        try rig.postRx(10)
        #expect(try rig.received().map(\.header.destinationPort) == [0, 1, 2, 3])
    }

    @Test("RST packets go before control packets, which go before data")
    func packetOrder() throws {
        let rig = try VsockRig(rxBuffers: 0)
        rig.host.listen(onPort: 6000)
        try rig.send(H.header(.request, guestPort: 1, hostPort: 6000))
        try rig.postRx(1)
        #expect(try rig.received().map(\.op) == [.response])
        let fd = try #require(rig.host.connection(toPort: 6000))
        rig.hostSends(fd, "data")
        try rig.send(H.header(.request, guestPort: 2, hostPort: 6000))
        try rig.send(H.header(.readWrite, guestPort: 3, hostPort: 9, length: 0))
        try rig.postRx(3)
        #expect(try rig.received().map(\.op) == [.reset, .response, .readWrite])
    }

    // MARK: Reset and the event queue

    @Test("reactivation after a reset sends VIRTIO_VSOCK_EVENT_TRANSPORT_RESET; the first activation does not")
    func transportResetEvent() throws {
        let rig = try VsockRig()
        try rig.postEventBuffer()
        #expect(try rig.receivedEvents().isEmpty)
        let fd = try rig.establishedFromGuest()
        rig.resetDevice()
        #expect(rig.host.isClosed(fd))
        let statistics = rig.device.statistics
        #expect(statistics.connections == 0 && statistics.queuedResets == 0 && statistics.subscriptions == 0)
        try rig.start()
        try rig.postEventBuffer()
        #expect(try rig.receivedEvents() == [VsockWire.eventTransportReset])
        try rig.postEventBuffer()
        #expect(try rig.receivedEvents().isEmpty, "one event per reset")
    }

    @Test("a reset closes every host socket and removes every subscription and timer")
    func resetCleansUp() throws {
        let rig = try VsockRig()
        _ = try rig.establishedFromGuest(guestPort: 1)
        _ = try rig.establishedFromHost()
        let pending = rig.host.hostConnects(sending: "CONN")
        rig.events.fire(VsockFakeHost.listener)
        #expect(rig.events.watchedDescriptors.count == 4)
        rig.resetDevice()
        #expect(rig.host.openSockets.isEmpty)
        #expect(rig.host.isClosed(pending))
        #expect(rig.events.watchedDescriptors.isEmpty)
        #expect(rig.events.timerCount == 0)
        // Handlers of the old activation that still run do nothing.
        rig.events.fireTimers()
        rig.events.runPosted()
    }

    @Test("the device closes its host sockets when it goes away")
    func deinitClosesSockets() throws {
        let host: VsockFakeHost
        let fd: Int32
        do {
            let rig = try VsockRig()
            host = rig.host
            fd = try rig.establishedFromGuest()
            #expect(!host.isClosed(fd))
        }
        #expect(host.isClosed(fd))
    }
}

extension VsockRig {
    /// A guest-initiated connection set up before any rx buffer exists; the
    /// RESPONSE is taken with a buffer posted for it.
    func establishedFromGuestWithoutBuffers() throws -> Int32 {
        host.listen(onPort: 6000)
        try send(Self.header(.request, guestPort: 40000, hostPort: 6000))
        try postRx(1)
        #expect(try received().map(\.op) == [.response])
        return try #require(host.connection(toPort: 6000))
    }
}
