// Resource data for `_CRS` (ACPI 6.5 §6.4): the descriptors swiftvm's devices
// need, wrapped in a ResourceTemplate.

/// One resource descriptor inside a ``AML/ResourceTemplate``.
protocol AMLResourceDescriptor: AMLEncodable {}

extension AML {
    /// `ResourceTemplate() { ... }`: a Buffer holding the descriptors and an
    /// End Tag (§6.4.2.9, `0x79`) whose checksum byte is 0, which tells the
    /// OS not to check it (iasl writes the same).
    struct ResourceTemplate: AMLEncodable {
        var descriptors: [any AMLResourceDescriptor]

        init(@AMLListBuilder<any AMLResourceDescriptor> _ descriptors: () -> [any AMLResourceDescriptor]) {
            self.descriptors = descriptors()
        }

        static let endTag: [UInt8] = [0x79, 0x00]

        func encode(into bytes: inout [UInt8]) {
            Buffer(descriptors.flatMap(\.amlBytes) + Self.endTag).encode(into: &bytes)
        }
    }

    /// `IO(Decode16, min, max, alignment, length)`: I/O Port Descriptor
    /// (§6.4.2.5), small item 0x08 with 7 bytes of data.
    struct IO: AMLResourceDescriptor, Equatable {
        var minimum: UInt16
        var maximum: UInt16
        var alignment: UInt8
        var length: UInt8

        /// A fixed range: `length` ports at `base` and nowhere else.
        init(base: UInt16, length: UInt8) {
            self.minimum = base
            self.maximum = base
            self.alignment = 1
            self.length = length
        }

        func encode(into bytes: inout [UInt8]) {
            let decode16: UInt8 = 0x01  // the device decodes all 16 address bits
            bytes += [0x47, decode16]
            bytes.appendLittleEndian(minimum)
            bytes.appendLittleEndian(maximum)
            bytes += [alignment, length]
        }
    }

    /// `IRQNoFlags() { irq }`: IRQ Descriptor (§6.4.2.1), small item 0x04
    /// with 2 bytes of data, a mask of ISA IRQs 0-15. Without the optional
    /// flags byte the IRQ is edge-triggered, active-high and exclusive.
    struct IRQNoFlags: AMLResourceDescriptor, Equatable {
        var irqs: [UInt8]

        init(_ irqs: UInt8...) {
            precondition(irqs.allSatisfy { $0 < 16 }, "IRQ descriptors name ISA IRQs 0-15")
            self.irqs = irqs
        }

        func encode(into bytes: inout [UInt8]) {
            let mask = irqs.reduce(UInt16(0)) { $0 | 1 << $1 }
            bytes.append(0x22)
            bytes.appendLittleEndian(mask)
        }
    }

    /// `Memory32Fixed(ReadWrite or ReadOnly, base, length)`: 32-Bit Fixed
    /// Memory Range Descriptor (§6.4.3.4), large item 0x06, 9 bytes of data.
    struct Memory32Fixed: AMLResourceDescriptor, Equatable {
        var writable: Bool
        var base: UInt32
        var length: UInt32

        init(writable: Bool = true, base: UInt32, length: UInt32) {
            self.writable = writable
            self.base = base
            self.length = length
        }

        func encode(into bytes: inout [UInt8]) {
            bytes.append(0x86)
            bytes.appendLittleEndian(UInt16(9))
            bytes.append(writable ? 0x01 : 0x00)
            bytes.appendLittleEndian(base)
            bytes.appendLittleEndian(length)
        }
    }

    /// `Interrupt(ResourceConsumer, trigger, polarity, sharing) { gsi }`:
    /// Extended Interrupt Descriptor (§6.4.3.6), large item 0x09, with one
    /// interrupt number (a GSI on x86) and no resource source.
    struct Interrupt: AMLResourceDescriptor, Equatable {
        enum Trigger: Equatable { case edge, level }
        enum Polarity: Equatable { case activeHigh, activeLow }
        enum Sharing: Equatable { case exclusive, shared }

        var trigger: Trigger
        var polarity: Polarity
        var sharing: Sharing
        var number: UInt32

        init(_ trigger: Trigger, _ polarity: Polarity, _ sharing: Sharing = .exclusive, number: UInt32) {
            self.trigger = trigger
            self.polarity = polarity
            self.sharing = sharing
            self.number = number
        }

        /// Interrupt Vector Flags, byte 3: bit 0 consumer, bit 1 edge,
        /// bit 2 active-low, bit 3 shared.
        var flags: UInt8 {
            let consumer: UInt8 = 0x01
            return consumer
                | (trigger == .edge ? 0x02 : 0)
                | (polarity == .activeLow ? 0x04 : 0)
                | (sharing == .shared ? 0x08 : 0)
        }

        func encode(into bytes: inout [UInt8]) {
            bytes.append(0x89)
            bytes.appendLittleEndian(UInt16(6))  // flags, table length, one DWord
            bytes += [flags, 1]
            bytes.appendLittleEndian(number)
        }
    }
}
