import SwiftVMMemory

/// The tx queue: packets the guest sends (virtio 1.2 §5.10.6.2), each a
/// chain of device-readable buffers holding the 44-byte header and `len`
/// payload bytes.
extension VirtioVsock {
    /// One bounded pass over the tx queue. Tx buffers carry nothing back, so
    /// each is used with length 0 once its packet was handled.
    func serveTx(_ s: inout State, _ activation: VirtioActivation) -> Bool {
        guard let queue = activation.queue(at: Queue.tx) else { return false }
        for _ in 0..<VirtioActivation.requestsPerPass {
            guard let chain = queue.popAvailable() else { return false }
            // The payload is read (and written to the host) before the
            // buffer goes back to the guest.
            handleGuestPacket(chain, memory: activation.memory, &s)
            counters.add(Counter.txPackets)
            queue.addUsed(head: chain.head, length: 0)
        }
        return true
    }

    private func malformed(_ reason: String, _ s: inout State) {
        s.malformedPackets += 1
        counters.add(Counter.malformedPackets)
        Log.warning("virtio-vsock: dropping a guest packet: \(reason)")
    }

    /// Checks a packet's header against its chain and the guest's identity,
    /// then hands it to its connection, or answers for a connection that
    /// does not exist.
    func handleGuestPacket(_ chain: DescriptorChain, memory: GuestMemory, _ s: inout State) {
        var cursor = GuestBufferCursor(memory: memory, buffers: chain.readable)
        let total = cursor.remaining
        var raw = [UInt8](repeating: 0, count: VsockHeader.size)
        var got = 0
        do {
            got = try raw.withUnsafeMutableBytes { (buffer) throws(GuestMemoryError) -> Int in try cursor.read(into: buffer) }
        } catch {
            malformed("its header is unreadable: \(error)", &s)
            return
        }
        guard got == VsockHeader.size, let header = raw.withUnsafeBytes({ VsockHeader(decoding: $0) }) else {
            malformed("the chain holds \(total) readable bytes, fewer than a \(VsockHeader.size)-byte header", &s)
            return
        }
        // A packet must come from the guest's own CID (§5.10.6.2); anything
        // else is spoofed and gets no answer.
        guard header.sourceCID == guestCID else {
            malformed("source CID \(header.sourceCID) is not the guest's \(guestCID): \(header)", &s)
            return
        }
        let key = VsockConnectionKey(hostPort: header.destinationPort, guestPort: header.sourcePort)
        let payload = total - UInt64(VsockHeader.size)
        guard header.length <= limits.maxPacketPayload, UInt64(header.length) == payload else {
            let why = header.length > limits.maxPacketPayload
                ? "len \(header.length) is over the \(limits.maxPacketPayload)-byte limit"
                : "len \(header.length) does not match the \(payload) payload bytes in the chain"
            malformed("\(why): \(header)", &s)
            // The stream lost bytes, so its connection cannot go on.
            if let connection = s.connections[key] {
                closeConnection(connection, sendReset: true, &s)
            } else if header.op != VsockOp.reset.rawValue {
                queueReset(key, &s)
            }
            return
        }
        guard header.destinationCID == VsockWire.hostCID, header.type == VsockWire.typeStream else {
            // Only the host (CID 2) is reachable through this device, and
            // only with stream sockets; like a peer without such a socket,
            // answer with RST (§5.10.6.4).
            Log.debug("virtio-vsock: no route for \(header); answering RST")
            if let connection = s.connections[key] {
                closeConnection(connection, sendReset: true, &s)
            } else if header.op != VsockOp.reset.rawValue {
                queueReset(key, &s)
            }
            return
        }
        if let connection = s.connections[key] {
            handle(header, payload: &cursor, on: connection, &s)
        } else {
            handleUnknownConnection(header, key: key, &s)
        }
    }

    /// A packet for no known connection: a REQUEST opens one towards the
    /// host side; an RST needs no answer; anything else gets RST (§5.10.6.4).
    private func handleUnknownConnection(_ header: VsockHeader, key: VsockConnectionKey, _ s: inout State) {
        switch header.operation {
        case .request:
            openGuestConnection(header, key: key, &s)
        case .reset:
            break
        default:
            Log.debug("virtio-vsock: \(header) is for no connection; answering RST")
            queueReset(key, &s)
        }
    }

    /// The guest connects to host port `dst_port`: the host side connects to
    /// its listener there at once; RESPONSE if it took the connection, RST if not.
    private func openGuestConnection(_ header: VsockHeader, key: VsockConnectionKey, _ s: inout State) {
        guard s.connections.count < limits.maxConnections else {
            Log.warning("virtio-vsock: refusing the guest's connection to host port \(key.hostPort): "
                + "\(limits.maxConnections) connections are open")
            queueReset(key, &s)
            return
        }
        let fd: Int32
        switch host.connect(toPort: key.hostPort) {
        case .refused(let reason):
            Log.debug("virtio-vsock: the guest's connection to host port \(key.hostPort) is refused: \(reason)")
            queueReset(key, &s)
            return
        case .connected(let connected):
            fd = connected
        }
        let socketID = s.nextSocketID
        s.nextSocketID += 1
        guard let token = watch(fd, socketID: socketID, &s) else {
            host.close(fd)
            queueReset(key, &s)
            return
        }
        let connection = VsockConnection(
            key: key, fd: fd, socketID: socketID, token: token.token, phase: .established, hostInitiated: false)
        connection.updatePeerCredit(bufferAllocation: header.bufferAllocation, forwardCount: header.forwardCount)
        connection.pending = [.response]
        s.connections[key] = connection
        counters.add(Counter.connectionsOpened)
        s.connectionBySocket[socketID] = key
        enqueueControl(connection, &s)
    }

    /// A packet for an existing connection, by phase and operation
    /// (§5.10.6.4 to §5.10.6.6). Every packet carries the guest's credit.
    private func handle(
        _ header: VsockHeader, payload: inout GuestBufferCursor, on connection: VsockConnection, _ s: inout State
    ) {
        let creditGrew = connection.updatePeerCredit(
            bufferAllocation: header.bufferAllocation, forwardCount: header.forwardCount)
        guard let op = header.operation else {
            malformed("unknown op \(header.op) on \(connection.key); resetting it", &s)
            closeConnection(connection, sendReset: true, &s)
            return
        }
        switch (connection.phase, op) {
        case (.awaitingResponse, .response):
            // The guest accepted: the host program learns its port, then the stream.
            connection.phase = .established
            connection.deadline = nil
            connection.pending.remove(.request)
            let line = Array("OK \(connection.key.hostPort)\n".utf8)
            connection.toHost.append(line)
            connection.ownBytesInQueue += line.count
            flushToHost(connection, &s)
            if isOpen(connection, s) { updateDataQueue(connection, &s) }
        case (_, .reset):
            // The guest refused (no listener on its port) or dropped the
            // connection: close the host socket, without answering.
            Log.debug("virtio-vsock: the guest reset \(connection.key)")
            closeConnection(connection, sendReset: false, &s)
            return
        case (.established, .shutdown):
            applyGuestShutdown(header.flags & VsockWire.shutdownBoth, connection, &s)
        case (.established, .readWrite):
            forwardToHost(header, payload: &payload, connection, &s)
        case (.established, .creditRequest):
            connection.pending.insert(.creditUpdate)
            enqueueControl(connection, &s)
        case (_, .creditUpdate), (.awaitingResponse, .creditRequest):
            // The credit was taken above; before RESPONSE there is nothing to tell.
            break
        case (_, .request), (.established, .response), (.awaitingResponse, .shutdown), (.awaitingResponse, .readWrite):
            malformed("\(op) on \(connection.key) while it is \(connection.phase == .established ? "established" : "waiting for RESPONSE"); resetting it", &s)
            closeConnection(connection, sendReset: true, &s)
            return
        }
        if creditGrew, isOpen(connection, s) { updateDataQueue(connection, &s) }
    }

    /// SHUTDOWN from the guest: it will send no more (SEND) and/or take no
    /// more (RECEIVE). The host socket is half-closed to match, once the
    /// guest's data reached it; when both directions are finished the
    /// device answers RST, which ends the connection cleanly (§5.10.6.6).
    private func applyGuestShutdown(_ flags: UInt32, _ connection: VsockConnection, _ s: inout State) {
        connection.guestShutdown |= flags
        if flags & VsockWire.shutdownReceive != 0, !connection.hostReadShut {
            connection.hostReadShut = true
            host.shutdown(connection.fd, reading: true, writing: false)
            if connection.inDataQueue {
                connection.inDataQueue = false
                s.dataQueue.removeAll { $0 == connection.key }
            }
        }
        if connection.toHost.isEmpty {
            finishHostWrites(connection, &s)
        }
    }

    /// RW: guest bytes for the host peer. They go straight to the host
    /// socket; what it does not take now waits, within the credit the device
    /// advertised. More than that credit breaks the protocol and resets the
    /// connection (§5.10.6.3).
    private func forwardToHost(
        _ header: VsockHeader, payload: inout GuestBufferCursor, _ connection: VsockConnection, _ s: inout State
    ) {
        guard connection.guestShutdown & VsockWire.shutdownSend == 0 else {
            malformed("RW on \(connection.key) after the guest shut down its sending side; resetting it", &s)
            closeConnection(connection, sendReset: true, &s)
            return
        }
        guard connection.bufferedGuestBytes + Int(header.length) <= Int(limits.bufferSize) else {
            malformed("RW of \(header.length) bytes on \(connection.key) exceeds the credit: "
                + "\(connection.bufferedGuestBytes) of \(limits.bufferSize) bytes already wait for the host; resetting it", &s)
            closeConnection(connection, sendReset: true, &s)
            return
        }
        var remaining = UInt64(header.length)
        var blocked = !connection.toHost.isEmpty
        do {
            while remaining > 0, let segment = try payload.nextSegment(limit: remaining) {
                remaining -= UInt64(segment.count)
                var offset = 0
                while !blocked, offset < segment.count {
                    switch host.write(connection.fd, from: UnsafeRawBufferPointer(rebasing: segment[offset...])) {
                    case .transferred(let count):
                        offset += count
                        connection.forwardCount &+= UInt32(truncatingIfNeeded: count)
                        counters.add(Counter.txBytes, UInt64(count))
                    case .wouldBlock:
                        blocked = true
                    case .endOfStream, .failed:
                        Log.debug("virtio-vsock: the host peer of \(connection.key) closed; resetting it")
                        closeConnection(connection, sendReset: true, &s)
                        return
                    }
                }
                if offset < segment.count {
                    connection.toHost.append(UnsafeRawBufferPointer(rebasing: segment[offset...]))
                }
            }
        } catch {
            malformed("RW payload on \(connection.key) is unreadable: \(error); resetting it", &s)
            closeConnection(connection, sendReset: true, &s)
            return
        }
        if !connection.toHost.isEmpty {
            setWatchingWritable(connection, true, &s)
        }
        noteForwarded(connection, &s)
    }
}
