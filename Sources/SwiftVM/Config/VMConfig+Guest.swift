import SwiftVMMemory
import SwiftVMBoot

extension VMConfig {
    /// One virtio-mmio device as the guest finds it.
    public struct VirtioSlot: Sendable, Equatable {
        public enum Kind: Sendable, Equatable {
            case block(DriveConfig)
            case net(NetConfig)
            case vsock(VsockConfig)
            case balloon(BalloonConfig)
            case entropy
        }

        public var kind: Kind
        public var window: VirtioMMIODeviceInfo
    }

    /// The IOAPIC has 24 pins and virtio devices start at GSI 5.
    public static let maxVirtioDevices = 24 - Int(X86Layout.firstVirtioIRQ)

    /// The virtio devices in guest order: drives (root first), network
    /// interfaces, vsock, the balloon, then the entropy device; device i gets
    /// the i-th 4 KiB window from 0xc0001000 and GSI 5 + i.
    public var virtioSlots: [VirtioSlot] {
        var kinds = orderedDrives.map { VirtioSlot.Kind.block($0) }
        kinds += netInterfaces.map { VirtioSlot.Kind.net($0) }
        if let vsock { kinds.append(.vsock(vsock)) }
        if let balloon { kinds.append(.balloon(balloon)) }
        if entropyDevice { kinds.append(.entropy) }
        return kinds.enumerated().map { index, kind in VirtioSlot(kind: kind, window: VMConfig.virtioWindow(index)) }
    }

    /// The MMIO window and GSI of the `index`-th virtio device on x86_64.
    public static func virtioWindow(_ index: Int) -> VirtioMMIODeviceInfo {
        let base = X86Layout.virtioMMIOStart.rawValue + UInt64(index) * X86Layout.virtioMMIOSize
        return VirtioMMIODeviceInfo(base: GuestAddress(base), irq: X86Layout.firstVirtioIRQ + UInt32(index))
    }

    /// The command line the guest gets: the configured one, plus `root=` for a
    /// root drive (unless the line already names a root), plus, without ACPI,
    /// one `virtio_mmio.device=` stanza per device for kernels built with
    /// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES. The additions go before a `--` in the
    /// configured line, since the kernel hands every word after it to init.
    public var guestCommandLine: String {
        var words: [String] = []
        let hasRoot = KernelCommandLine.parameters(in: commandLine).value(of: "root") != nil
        if let root = drives.first(where: \.isRootDevice), !hasRoot {
            words.append(root.rootParameters)
        }
        if !acpi {
            for slot in virtioSlots {
                words.append("virtio_mmio.device=4K@0x\(String(slot.window.base.rawValue, radix: 16)):\(slot.window.irq)")
            }
        }
        return KernelCommandLine.addingParameters(words, to: commandLine)
    }
}
