import SwiftVMMemory

/// The host end: the listening socket, host programs' `CONNECT` lines, and
/// readiness of each connection's socket, all on the event loop.
extension VirtioVsock {
    /// A subscription, or none where the device has no event loop (tests
    /// that drive it by hand).
    struct Watch {
        var token: EventToken?
    }

    /// Subscribes a host socket, edge-triggered: the device reads until the
    /// socket would block and remembers that it may be readable, so a
    /// socket it cannot serve yet (no credit, no rx buffers) never spins the
    /// loop. Nil when the loop refused the descriptor.
    func watch(_ fd: Int32, socketID: UInt64, _ s: inout State) -> Watch? {
        guard let events = s.activation?.events else { return Watch(token: nil) }
        do {
            let token = try events.subscribe(fd, interest: [.readable, .edgeTriggered]) { [weak self] readiness in
                self?.hostSocketReady(socketID, readiness)
            }
            return Watch(token: token)
        } catch {
            Log.warning("virtio-vsock: cannot watch a host socket: \(error)")
            return nil
        }
    }

    /// Watches the listening socket (level-triggered: each event accepts a
    /// bounded number of connections and the rest wait for the next one).
    func startListening(_ s: inout State) {
        guard s.listenerToken == nil, s.listenerPausedUntil == nil, let fd = host.listeningDescriptor,
            let events = s.activation?.events
        else { return }
        let generation = s.generation
        do {
            s.listenerToken = try events.subscribe(fd, interest: .readable) { [weak self] _ in
                self?.listenerReady(generation: generation)
            }
        } catch {
            Log.warning("virtio-vsock: cannot watch the listening socket, so host programs cannot connect: \(error)")
        }
    }

    /// Host connections accepted per listener event.
    static let acceptsPerEvent = 16

    private func listenerReady(generation: UInt64) {
        state.withLock { s in
            guard s.generation == generation, s.activation != nil else { return }
            accepting: for _ in 0..<Self.acceptsPerEvent {
                switch host.accept() {
                case .accepted(let fd):
                    admitHostConnection(fd, &s)
                case .wouldBlock:
                    break accepting
                case .failed(let errno):
                    // Out of descriptors, most likely: stop watching for a
                    // moment rather than spin on a listener that stays readable.
                    Log.warning("virtio-vsock: accepting a host connection failed (errno \(errno)); retrying in 100 ms")
                    if let token = s.listenerToken { s.activation?.events?.remove(token) }
                    s.listenerToken = nil
                    s.listenerPausedUntil = clock() + 100
                    break accepting
                }
            }
            _ = pumpRx(&s)
            armTimer(&s)
        }
    }

    /// A host program connected: it now has a limited time and length for
    /// its `CONNECT <port>\n` line.
    private func admitHostConnection(_ fd: Int32, _ s: inout State) {
        guard s.handshakes.count < limits.maxPendingHostConnections, s.connections.count < limits.maxConnections else {
            Log.warning("virtio-vsock: refusing a host connection: \(s.handshakes.count) are waiting for their CONNECT "
                + "line and \(s.connections.count) connections are open")
            host.close(fd)
            return
        }
        let socketID = s.nextSocketID
        s.nextSocketID += 1
        guard let watch = watch(fd, socketID: socketID, &s) else {
            host.close(fd)
            return
        }
        let handshake = VsockHandshake(
            fd: fd, socketID: socketID, token: watch.token, deadline: clock() + limits.connectLineTimeoutMilliseconds)
        s.handshakes[socketID] = handshake
        // Edge-triggered: the line may be there already.
        readHandshake(handshake, &s)
    }

    /// The loop's call for a host socket, a handshake or a connection.
    func hostSocketReady(_ socketID: UInt64, _ readiness: EventReadiness) {
        state.withLock { s in
            if let handshake = s.handshakes[socketID] {
                readHandshake(handshake, &s)
            } else if let key = s.connectionBySocket[socketID], let connection = s.connections[key] {
                connectionReady(connection, readiness, &s)
            } else {
                // A socket closed after its event was dispatched.
                return
            }
            _ = pumpRx(&s)
            armTimer(&s)
        }
    }

    // MARK: - The CONNECT line

    /// Reads the line a byte at a time, so nothing after the newline (the
    /// stream itself) is consumed.
    private func readHandshake(_ handshake: VsockHandshake, _ s: inout State) {
        var byte: UInt8 = 0
        for _ in 0...limits.connectLineLimit {
            let result = withUnsafeMutableBytes(of: &byte) { host.read(handshake.fd, into: $0) }
            switch result {
            case .transferred:
                if byte == UInt8(ascii: "\n") {
                    finishHandshake(handshake, &s)
                    return
                }
                handshake.line.append(byte)
                if handshake.line.count >= limits.connectLineLimit {
                    dropHandshake(handshake, "sent more than \(limits.connectLineLimit) bytes without a newline", &s)
                    return
                }
            case .wouldBlock:
                return
            case .endOfStream:
                dropHandshake(handshake, "closed before a whole CONNECT line", &s)
                return
            case .failed(let errno):
                dropHandshake(handshake, "failed while sending its CONNECT line (errno \(errno))", &s)
                return
            }
        }
    }

    /// `CONNECT <port>` (the word in any case, blanks around the words, an
    /// optional carriage return), as Firecracker accepts it; nil otherwise.
    public static func parseConnectLine(_ line: [UInt8]) -> UInt32? {
        guard let text = String(validating: line, as: UTF8.self) else { return nil }
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
        guard words.count == 2, words[0].lowercased() == "connect", words[1].allSatisfy(\.isASCII),
            words[1].allSatisfy(\.isNumber), let port = UInt32(words[1])
        else { return nil }
        return port
    }

    private func finishHandshake(_ handshake: VsockHandshake, _ s: inout State) {
        guard let guestPort = Self.parseConnectLine(handshake.line) else {
            let shown = String(decoding: handshake.line.prefix(40), as: UTF8.self)
            dropHandshake(handshake, "sent \"\(shown)\", not \"CONNECT <port>\"", &s)
            return
        }
        guard s.connections.count < limits.maxConnections else {
            dropHandshake(handshake, "asked for guest port \(guestPort) while \(limits.maxConnections) connections are open", &s)
            return
        }
        let key = VsockConnectionKey(hostPort: allocateHostPort(guestPort: guestPort, &s), guestPort: guestPort)
        s.handshakes[handshake.socketID] = nil
        let connection = VsockConnection(
            key: key, fd: handshake.fd, socketID: handshake.socketID, token: handshake.token, phase: .awaitingResponse,
            hostInitiated: true)
        // Bytes after the newline may already wait; the socket is read once
        // the guest accepted.
        connection.hostReadable = true
        connection.pending = [.request]
        connection.deadline = clock() + limits.responseTimeoutMilliseconds
        s.connections[key] = connection
        counters.add(Counter.connectionsOpened)
        s.connectionBySocket[handshake.socketID] = key
        enqueueControl(connection, &s)
    }

    /// The next host port no connection to `guestPort` uses.
    private func allocateHostPort(guestPort: UInt32, _ s: inout State) -> UInt32 {
        while true {
            let port = s.nextHostPort
            s.nextHostPort = port == UInt32.max - 1 ? Self.firstHostPort : port + 1
            if s.connections[VsockConnectionKey(hostPort: port, guestPort: guestPort)] == nil { return port }
        }
    }

    func dropHandshake(_ handshake: VsockHandshake, _ why: String, _ s: inout State) {
        Log.debug("virtio-vsock: closing a host connection that \(why)")
        s.handshakes[handshake.socketID] = nil
        if let token = handshake.token { s.activation?.events?.remove(token) }
        host.close(handshake.fd)
    }

    // MARK: - Connection sockets

    private func connectionReady(_ connection: VsockConnection, _ readiness: EventReadiness, _ s: inout State) {
        if readiness.contains(.writable) || readiness.contains(.hangup), !connection.toHost.isEmpty {
            flushToHost(connection, &s)
            guard isOpen(connection, s) else { return }
        }
        guard readiness.contains(.readable) || readiness.contains(.hangup) else { return }
        if connection.phase == .awaitingResponse, readiness.contains(.hangup) {
            // The host program gave up before the guest answered.
            closeConnection(connection, sendReset: true, &s)
            return
        }
        connection.hostReadable = true
        updateDataQueue(connection, &s)
    }

    /// Writes what waits for the host peer until the socket would block.
    func flushToHost(_ connection: VsockConnection, _ s: inout State) {
        while !connection.toHost.isEmpty {
            var result = VsockHostIO.wouldBlock
            let taken = connection.toHost.consume { bytes in
                result = host.write(connection.fd, from: bytes)
                if case .transferred(let count) = result { return count }
                return 0
            }
            switch result {
            case .transferred:
                let own = min(connection.ownBytesInQueue, taken)
                connection.ownBytesInQueue -= own
                connection.forwardCount &+= UInt32(truncatingIfNeeded: taken - own)
                counters.add(Counter.txBytes, UInt64(taken - own))
            case .wouldBlock:
                setWatchingWritable(connection, true, &s)
                noteForwarded(connection, &s)
                return
            case .endOfStream, .failed:
                // The host peer closed early: the guest learns by RST.
                Log.debug("virtio-vsock: the host peer of \(connection.key) closed; resetting it")
                closeConnection(connection, sendReset: true, &s)
                return
            }
        }
        setWatchingWritable(connection, false, &s)
        noteForwarded(connection, &s)
        finishHostWrites(connection, &s)
    }

    /// Once everything the guest sent reached the host: a guest that shut
    /// down its sending side has the host socket half-closed to match, and a
    /// connection finished both ways ends with RST.
    func finishHostWrites(_ connection: VsockConnection, _ s: inout State) {
        guard isOpen(connection, s), connection.toHost.isEmpty else { return }
        if connection.guestShutdown & VsockWire.shutdownSend != 0, !connection.hostWriteShut {
            connection.hostWriteShut = true
            host.shutdown(connection.fd, reading: false, writing: true)
        }
        if connection.isFinished {
            closeConnection(connection, sendReset: true, &s)
        }
    }

    /// Bytes reached the host: past the threshold the guest hears the new
    /// `fwd_cnt`, so a guest waiting for credit goes on.
    func noteForwarded(_ connection: VsockConnection, _ s: inout State) {
        // Never more than half the buffer, or a guest that used all its
        // credit would wait for an update that does not come.
        let threshold = max(1, min(limits.creditUpdateThreshold, limits.bufferSize / 2))
        if connection.creditUpdateDue(threshold: threshold) {
            connection.pending.insert(.creditUpdate)
            enqueueControl(connection, &s)
        }
    }

    /// Watches for the host socket becoming writable only while bytes wait for it.
    func setWatchingWritable(_ connection: VsockConnection, _ on: Bool, _ s: inout State) {
        guard connection.watchingWritable != on else { return }
        connection.watchingWritable = on
        guard let token = connection.token, let events = s.activation?.events else { return }
        let interest: EventInterest = on ? [.readable, .writable, .edgeTriggered] : [.readable, .edgeTriggered]
        do { try events.modify(token, interest: interest) } catch {
            Log.warning("virtio-vsock: cannot change what the loop watches on \(connection.key): \(error); resetting it")
            closeConnection(connection, sendReset: true, &s)
        }
    }

    // MARK: - Bookkeeping

    func isOpen(_ connection: VsockConnection, _ s: State) -> Bool {
        s.connections[connection.key] === connection
    }

    /// Forgets a connection and closes its host socket. With `sendReset` the
    /// guest gets RST, unless it never heard of the connection.
    func closeConnection(_ connection: VsockConnection, sendReset: Bool, _ s: inout State) {
        guard isOpen(connection, s) else { return }
        counters.add(Counter.connectionsClosed)
        s.connections[connection.key] = nil
        s.connectionBySocket[connection.socketID] = nil
        if let token = connection.token { s.activation?.events?.remove(token) }
        host.close(connection.fd)
        if connection.inControlQueue { s.controlQueue.removeAll { $0 == connection.key } }
        if connection.inDataQueue { s.dataQueue.removeAll { $0 == connection.key } }
        connection.inControlQueue = false
        connection.inDataQueue = false
        if sendReset, connection.phase == .established || connection.requestDelivered {
            queueReset(connection.key, &s)
        }
    }

    /// Owes the guest an RST for `key`; bounded, since a guest that does not
    /// read its rx queue could provoke them without end.
    func queueReset(_ key: VsockConnectionKey, _ s: inout State) {
        guard s.resets.count < limits.maxQueuedResets else {
            s.droppedResets += 1
            counters.add(Counter.droppedResets)
            Log.warning("virtio-vsock: \(limits.maxQueuedResets) RST packets wait for rx buffers; dropping the one for \(key)")
            return
        }
        s.resets.append(key)
    }

    func enqueueControl(_ connection: VsockConnection, _ s: inout State) {
        guard !connection.inControlQueue, !connection.pending.isEmpty else { return }
        connection.inControlQueue = true
        s.controlQueue.append(connection.key)
    }

    /// Puts a connection whose host socket may have data for the guest in the
    /// data queue; when the guest has no credit for it, asks once for an update.
    func updateDataQueue(_ connection: VsockConnection, _ s: inout State) {
        if connection.wantsToSendData, !connection.inDataQueue {
            connection.inDataQueue = true
            s.dataQueue.append(connection.key)
        } else if connection.blockedOnCredit, !connection.creditRequested {
            connection.creditRequested = true
            connection.pending.insert(.creditRequest)
            enqueueControl(connection, &s)
        }
    }
}
