import Glibc
import Synchronization
import SwiftVM

/// Firecracker-style metrics: one JSON object per flush, written to the
/// `--metrics-path` or `PUT /metrics` file or FIFO, every 60 seconds while
/// the VM runs and on `FlushMetrics`. Counters are cumulative since the VM
/// was built (Firecracker reports most of its counters since the last
/// flush; docs/api.md says which way swiftvm does it).
final class FirecrackerMetrics: Sendable {
    private struct State {
        var fd: Int32 = -1
        var path: String?
        /// API requests answered, by "METHOD /first-path-part" and by status.
        var requestsByRoute: [String: UInt64] = [:]
        var requestsByStatus: [String: UInt64] = [:]
        var flushes: UInt64 = 0
        var failedWrites: UInt64 = 0
    }

    private let state = Mutex(State())
    let instanceID: String

    init(instanceID: String) { self.instanceID = instanceID }

    deinit {
        let fd = state.withLock { $0.fd }
        if fd >= 0 { close(fd) }
    }

    var isConfigured: Bool { state.withLock { $0.fd >= 0 } }

    /// Opens the metrics destination; an error message when it cannot, or
    /// when metrics were already set up (Firecracker allows it once).
    func configure(path: String) -> String? {
        if isConfigured { return "The metrics system was already initialized; it can be set once." }
        // O_NONBLOCK: a FIFO without a reader must not hang the API, and a
        // full one drops a flush instead of stalling the VMM.
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            let hint = errno == ENXIO ? " (a FIFO needs a reader first)" : ""
            return "Cannot open the metrics file \(path): \(reason)\(hint)."
        }
        state.withLock {
            $0.fd = fd
            $0.path = path
        }
        return nil
    }

    func countRequest(method: String, path: String, status: Int) {
        let first = path.split(separator: "/").first.map { "/" + $0 } ?? "/"
        state.withLock {
            $0.requestsByRoute["\(method) \(first)", default: 0] += 1
            $0.requestsByStatus[String(status), default: 0] += 1
        }
    }

    /// Writes one JSON object and a newline.
    func flush(vm: MicroVM?) {
        let line = JSONOutput.encode(snapshot(vm: vm)) + [UInt8(ascii: "\n")]
        state.withLock { state in
            guard state.fd >= 0 else { return }
            state.flushes += 1
            let written = line.withUnsafeBytes { write(state.fd, $0.baseAddress, $0.count) }
            if written != line.count { state.failedWrites += 1 }
        }
    }

    struct Counters: Encodable {
        var values: [(String, UInt64)]

        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Key.self)
            for (name, value) in values { try container.encode(value, forKey: Key(stringValue: name)) }
        }
    }

    struct Snapshot: Encodable {
        var utcTimestampMs: UInt64
        var instanceID: String
        var apiServer: Counters
        var apiRequests: Counters
        var vcpu: [Counters]
        var uart: Counters
        var devices: [String: Counters]
        var metricsSystem: Counters

        enum CodingKeys: String, CodingKey {
            case utcTimestampMs = "utc_timestamp_ms"
            case instanceID = "instance_id"
            case apiServer = "api_server"
            case apiRequests = "api_requests"
            case vcpu, uart, devices
            case metricsSystem = "metrics"
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(utcTimestampMs, forKey: .utcTimestampMs)
            try container.encode(instanceID, forKey: .instanceID)
            try container.encode(apiServer, forKey: .apiServer)
            try container.encode(apiRequests, forKey: .apiRequests)
            try container.encode(vcpu, forKey: .vcpu)
            try container.encode(uart, forKey: .uart)
            var nested = container.nestedContainer(keyedBy: Counters.Key.self, forKey: .devices)
            for name in devices.keys.sorted() {
                if let counters = devices[name] { try nested.encode(counters, forKey: Counters.Key(stringValue: name)) }
            }
            try container.encode(metricsSystem, forKey: .metricsSystem)
        }
    }

    func snapshot(vm: MicroVM?) -> Snapshot {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let milliseconds = UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
        let (byStatus, byRoute, flushes, failed) = state.withLock {
            ($0.requestsByStatus, $0.requestsByRoute, $0.flushes, $0.failedWrites)
        }
        let metrics = vm?.metrics
        var devices: [String: Counters] = [:]
        for device in metrics?.devices ?? [] { devices[device.name] = Counters(values: device.counters) }
        return Snapshot(
            utcTimestampMs: milliseconds, instanceID: instanceID,
            apiServer: Counters(values: byStatus.sorted { $0.key < $1.key }.map { ("status_\($0.key)", $0.value) }),
            apiRequests: Counters(values: byRoute.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }),
            vcpu: (metrics?.vcpus ?? []).map { Counters(values: $0) },
            uart: Counters(values: [
                ("bytes_out", metrics?.uartBytesOut ?? 0), ("bytes_in", metrics?.uartBytesIn ?? 0),
                ("bytes_dropped", metrics?.uartBytesDropped ?? 0),
            ]),
            devices: devices,
            metricsSystem: Counters(values: [("flushes", flushes), ("failed_writes", failed)]))
    }
}
