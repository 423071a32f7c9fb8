public struct CPUIDEntry: Equatable, Sendable {
    public var function: UInt32; public var index: UInt32; public var flags: UInt32
    public var eax: UInt32; public var ebx: UInt32; public var ecx: UInt32; public var edx: UInt32
    public init(function: UInt32, index: UInt32, flags: UInt32, eax: UInt32, ebx: UInt32, ecx: UInt32, edx: UInt32) {
        self.function = function; self.index = index; self.flags = flags; self.eax = eax; self.ebx = ebx; self.ecx = ecx; self.edx = edx
    }
}
