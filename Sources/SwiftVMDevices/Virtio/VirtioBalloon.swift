/// A virtio memory balloon (virtio 1.2 §5.5, device ID 5). Not built yet.
public final class VirtioBalloon: VirtioDevice {
    public var deviceType: UInt32 { 5 }
    public var offeredFeatures: UInt64 { VirtioFeature.version1 }
    public var queueMaxSizes: [UInt16] { [256, 256] }
    public func readConfig(at offset: Int, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0)
    }
    public func writeConfig(at offset: Int, from data: UnsafeRawBufferPointer) {}
    public func activate(_ activation: VirtioActivation) {}
    public func reset() {}
    public func process(queue index: Int) -> Bool { false }
}
