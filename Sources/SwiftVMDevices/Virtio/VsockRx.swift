import SwiftVMMemory

/// The rx queue: packets for the guest (virtio 1.2 §5.10.6.1), each written
/// into a chain of device-writable buffers the driver made available: the
/// header, then for RW the payload, read from the host socket straight into
/// guest memory.
///
/// Order: RST packets first (connections already gone), then control packets
/// (REQUEST, RESPONSE, SHUTDOWN, credit), then data, one packet per
/// connection in turn so that no connection starves the others.
extension VirtioVsock {
    /// Fills rx buffers while there are packets and buffers, for at most
    /// `requestsPerPass` packets; the rest continues in a posted pass (or,
    /// without an event loop, the return value asks the caller to come back).
    @discardableResult
    func pumpRx(_ s: inout State) -> Bool {
        guard let activation = s.activation, let queue = activation.queue(at: Queue.rx) else { return false }
        var used = 0
        // Chains a connection did not need go back to `heldChain`, and each
        // attempt takes an entry off a queue, so this ends; the count is a
        // second bound.
        var attempts = 0
        while used < VirtioActivation.requestsPerPass, attempts < 4 * VirtioActivation.requestsPerPass, hasRxWork(s) {
            attempts += 1
            guard let chain = takeRxChain(queue, used: &used, &s) else { break }
            if let length = fill(chain, memory: activation.memory, &s) {
                queue.addUsed(head: chain.head, length: length)
                counters.add(Counter.rxPackets)
                used += 1
            } else {
                s.heldChain = chain
            }
        }
        if used > 0 { activation.signalUsedBuffers(on: queue) }
        guard used >= VirtioActivation.requestsPerPass || attempts >= 4 * VirtioActivation.requestsPerPass, hasRxWork(s)
        else { return false }
        guard let events = activation.events else { return true }
        if !s.continuationPosted {
            s.continuationPosted = true
            let generation = s.generation
            events.post { [weak self] in self?.continueRx(generation: generation) }
        }
        return false
    }

    private func continueRx(generation: UInt64) {
        state.withLock { s in
            guard s.generation == generation else { return }
            s.continuationPosted = false
            pumpRx(&s)
            armTimer(&s)
        }
    }

    private func hasRxWork(_ s: State) -> Bool {
        !s.resets.isEmpty || !s.controlQueue.isEmpty || !s.dataQueue.isEmpty
    }

    /// The held chain, or the next one from the queue big enough for a
    /// header; smaller ones go back empty (the driver broke §5.10.6.1).
    private func takeRxChain(_ queue: SplitQueue, used: inout Int, _ s: inout State) -> DescriptorChain? {
        if let held = s.heldChain {
            s.heldChain = nil
            return held
        }
        while let chain = queue.popAvailable() {
            if chain.writableLength >= UInt64(VsockHeader.size) { return chain }
            s.malformedPackets += 1
            counters.add(Counter.malformedPackets)
            Log.warning("virtio-vsock: rx buffer \(chain.head) has \(chain.writableLength) writable bytes, "
                + "fewer than a \(VsockHeader.size)-byte header; returned unused")
            queue.addUsed(head: chain.head, length: 0)
            used += 1
        }
        return nil
    }

    /// Writes the next packet into `chain`; nil when nothing needed it.
    private func fill(_ chain: DescriptorChain, memory: GuestMemory, _ s: inout State) -> UInt32? {
        if let key = s.resets.popFirst() {
            let header = VsockHeader(
                sourceCID: VsockWire.hostCID, destinationCID: guestCID, sourcePort: key.hostPort,
                destinationPort: key.guestPort, op: VsockOp.reset.rawValue)
            return write(header, into: chain, memory: memory)
        }
        while let key = s.controlQueue.popFirst() {
            guard let connection = s.connections[key] else { continue }
            connection.inControlQueue = false
            guard let header = nextControlPacket(connection) else { continue }
            enqueueControl(connection, &s)
            return write(header, into: chain, memory: memory)
        }
        while let key = s.dataQueue.popFirst() {
            guard let connection = s.connections[key] else { continue }
            connection.inDataQueue = false
            guard connection.wantsToSendData else {
                updateDataQueue(connection, &s)
                continue
            }
            if let length = sendHostData(connection, chain: chain, memory: memory, &s) { return length }
        }
        return nil
    }

    private func packet(_ connection: VsockConnection, _ op: VsockOp, flags: UInt32 = 0, length: UInt32 = 0) -> VsockHeader {
        // Every packet tells the guest our buffer and what reached the host.
        connection.advertisedForwardCount = connection.forwardCount
        connection.pending.remove(.creditUpdate)
        return VsockHeader(
            sourceCID: VsockWire.hostCID, destinationCID: guestCID, sourcePort: connection.key.hostPort,
            destinationPort: connection.key.guestPort, length: length, op: op.rawValue, flags: flags,
            bufferAllocation: limits.bufferSize, forwardCount: connection.forwardCount)
    }

    /// Takes the most urgent control packet the connection owes.
    private func nextControlPacket(_ connection: VsockConnection) -> VsockHeader? {
        if connection.pending.contains(.request) {
            connection.pending.remove(.request)
            connection.requestDelivered = true
            // The guest now has the REQUEST; it has this long to answer.
            connection.deadline = clock() + limits.responseTimeoutMilliseconds
            return packet(connection, .request)
        }
        if connection.pending.contains(.response) {
            connection.pending.remove(.response)
            return packet(connection, .response)
        }
        if connection.pending.contains(.shutdown) {
            connection.pending.remove(.shutdown)
            let flags = connection.shutdownFlagsToSend
            connection.shutdownFlagsToSend = 0
            return packet(connection, .shutdown, flags: flags)
        }
        if connection.pending.contains(.creditRequest) {
            connection.pending.remove(.creditRequest)
            return packet(connection, .creditRequest)
        }
        if connection.pending.contains(.creditUpdate) {
            return packet(connection, .creditUpdate)
        }
        return nil
    }

    /// RW: reads the host socket into the chain after the header, at most
    /// what the guest has credit for. Nil when the socket had nothing; then
    /// it is noted as drained, at its end, or failed.
    private func sendHostData(
        _ connection: VsockConnection, chain: DescriptorChain, memory: GuestMemory, _ s: inout State
    ) -> UInt32? {
        let room = chain.writableLength - UInt64(VsockHeader.size)
        let limit = min(room, UInt64(connection.peerCredit), UInt64(limits.maxPacketPayload))
        guard limit > 0 else {
            // A buffer with room for a header alone: it still carries news
            // of our credit, and the data waits for a bigger one.
            connection.inDataQueue = true
            s.dataQueue.append(connection.key)
            return write(packet(connection, .creditUpdate), into: chain, memory: memory)
        }
        var cursor = GuestBufferCursor(memory: memory, buffers: chain.writable)
        var got = 0
        var outcome = VsockHostIO.transferred(0)
        do {
            try cursor.skip(UInt64(VsockHeader.size))
            // The payload must be contiguous, so a short read is followed
            // by another into the rest of the same piece.
            reading: while UInt64(got) < limit, let segment = try cursor.nextSegment(limit: limit - UInt64(got)) {
                var offset = 0
                while offset < segment.count {
                    outcome = host.read(connection.fd, into: UnsafeMutableRawBufferPointer(rebasing: segment[offset...]))
                    guard case .transferred(let count) = outcome else { break reading }
                    offset += count
                    got += count
                }
            }
        } catch {
            Log.warning("virtio-vsock: rx buffer \(chain.head) is unwritable: \(error)")
            return 0
        }
        switch outcome {
        case .wouldBlock:
            connection.hostReadable = false
        case .endOfStream:
            hostReachedEnd(connection, &s)
        case .failed(let errno):
            Log.debug("virtio-vsock: reading the host peer of \(connection.key) failed (errno \(errno)); resetting it")
            closeConnection(connection, sendReset: true, &s)
        case .transferred:
            break
        }
        guard got > 0 else { return nil }
        connection.sentToGuest &+= UInt32(truncatingIfNeeded: got)
        counters.add(Counter.rxBytes, UInt64(got))
        if isOpen(connection, s) { updateDataQueue(connection, &s) }
        let headerLength = write(packet(connection, .readWrite, length: UInt32(got)), into: chain, memory: memory)
        return headerLength == 0 ? 0 : headerLength + UInt32(got)
    }

    /// The host peer will send no more: the guest gets SHUTDOWN(SEND), or RST
    /// when the guest, too, is done sending.
    private func hostReachedEnd(_ connection: VsockConnection, _ s: inout State) {
        connection.hostEndOfStream = true
        connection.hostReadable = false
        if connection.isFinished {
            closeConnection(connection, sendReset: true, &s)
            return
        }
        connection.shutdownFlagsToSend |= VsockWire.shutdownSend
        connection.pending.insert(.shutdown)
        enqueueControl(connection, &s)
    }

    /// Writes `header` at the start of the chain; the header's length, or 0
    /// if the chain could not take it.
    private func write(_ header: VsockHeader, into chain: DescriptorChain, memory: GuestMemory) -> UInt32 {
        var cursor = GuestBufferCursor(memory: memory, buffers: chain.writable)
        let bytes = header.bytes
        do {
            let written = try bytes.withUnsafeBytes { (raw) throws(GuestMemoryError) -> Int in try cursor.write(from: raw) }
            return written == VsockHeader.size ? UInt32(written) : 0
        } catch {
            Log.warning("virtio-vsock: rx buffer \(chain.head) is unwritable: \(error)")
            return 0
        }
    }
}
