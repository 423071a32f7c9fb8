import Atomics

/// Named event counters of one device (requests, bytes, errors, ...),
/// bumped from whatever thread does the work and read for metrics; atomics,
/// so the hot path takes no lock.
public final class DeviceCounters: Sendable {
    public let names: [String]
    private let values: [ManagedAtomic<UInt64>]

    public init(_ names: [String]) {
        self.names = names
        values = names.map { _ in ManagedAtomic<UInt64>(0) }
    }

    /// The counters named by the cases of `Name`, in order; their raw values
    /// are the names metrics show.
    public convenience init<Name: CaseIterable & RawRepresentable>(_ type: Name.Type)
    where Name.RawValue == String, Name.AllCases.Index == Int {
        self.init(Name.allCases.map(\.rawValue))
    }

    public func add(_ index: Int, _ amount: UInt64 = 1) {
        guard values.indices.contains(index) else { return }
        values[index].wrappingIncrement(by: amount, ordering: .relaxed)
    }

    public func add<Name: CaseIterable & RawRepresentable & Equatable>(_ name: Name, _ amount: UInt64 = 1)
    where Name.RawValue == String {
        guard let index = Name.allCases.firstIndex(of: name) else { return }
        add(Name.allCases.distance(from: Name.allCases.startIndex, to: index), amount)
    }

    public subscript(_ name: String) -> UInt64? {
        names.firstIndex(of: name).map { values[$0].load(ordering: .relaxed) }
    }

    /// Every counter and its value, in declaration order.
    public var snapshot: [(name: String, value: UInt64)] {
        zip(names, values).map { ($0, $1.load(ordering: .relaxed)) }
    }
}

/// A device that keeps counters for metrics.
public protocol CountingDevice {
    /// Every counter and its value now, in a fixed order; the names are what
    /// metrics show (`rx_bytes`, `inflated_pages`, ...).
    var metricCounters: [(name: String, value: UInt64)] { get }
}

/// A device whose counters are a `DeviceCounters`.
public protocol DeviceCountersOwner: CountingDevice {
    var counters: DeviceCounters { get }
}

extension DeviceCountersOwner {
    public var metricCounters: [(name: String, value: UInt64)] { counters.snapshot }
}
