
/// A tri-state pattern over a register: each bit is forced to 0, forced to 1,
/// or left as the host has it.
///
/// Templates write it as a string, most significant bit first:
/// `"0bxxxx0xx1..."`, where `x` keeps the host's bit.
public struct RegisterBitmap: Equatable, Sendable, CustomStringConvertible {
    /// The bits the pattern forces.
    public var mask: UInt64
    /// What the forced bits become; bits outside `mask` are zero.
    public var value: UInt64
    /// Register width in bits: 32 for CPUID registers, 64 for MSRs.
    public var width: Int

    public init(mask: UInt64, value: UInt64, width: Int) {
        self.mask = mask
        self.value = value & mask
        self.width = width
    }

    /// The host's value with the forced bits replaced.
    public func apply(to old: UInt64) -> UInt64 {
        (old & ~mask) | (value & mask)
    }

    /// The 32-bit form for CPUID registers; bits above 31 of the pattern are ignored.
    public func apply(to old: UInt32) -> UInt32 {
        UInt32(truncatingIfNeeded: apply(to: UInt64(old)))
    }

    /// Parses `"0b"` followed by exactly `width` characters of `0`, `1` or `x`.
    ///
    /// `_` may separate groups, as Firecracker allows. Unlike Firecracker, a
    /// shorter string is refused instead of padded with `x` on the left: a
    /// dropped character would otherwise silently shift every bit after it.
    public init(parsing text: String, width: Int) throws(RegisterBitmapSyntaxError) {
        let scalars = Array(text.unicodeScalars)
        guard scalars.count >= 2, scalars[0] == "0", scalars[1] == "b" else {
            throw RegisterBitmapSyntaxError(width: width, found: .noPrefix)
        }
        var mask: UInt64 = 0
        var value: UInt64 = 0
        var count = 0
        for (offset, scalar) in scalars.dropFirst(2).enumerated() {
            switch scalar {
            case "_": continue
            case "x": mask <<= 1; value <<= 1
            case "0": mask = mask << 1 | 1; value <<= 1
            case "1": mask = mask << 1 | 1; value = value << 1 | 1
            default:
                throw RegisterBitmapSyntaxError(width: width, found: .character(Character(scalar), position: offset + 3))
            }
            count += 1
        }
        guard count == width else {
            throw RegisterBitmapSyntaxError(width: width, found: .length(count))
        }
        self.init(mask: mask, value: value, width: width)
    }

    /// The pattern in template syntax, most significant bit first.
    public var description: String {
        var text = "0b"
        for bit in stride(from: width - 1, through: 0, by: -1) {
            let selector: UInt64 = 1 << UInt64(bit)
            text += mask & selector == 0 ? "x" : (value & selector == 0 ? "0" : "1")
        }
        return text
    }
}

/// A bitmap string that is not `"0b"` and `width` characters of 0, 1 or x.
public struct RegisterBitmapSyntaxError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Finding: Equatable, Sendable {
        /// The string does not start with `0b`.
        case noPrefix
        /// It has this many pattern characters instead of `width`.
        case length(Int)
        /// A character other than 0, 1, x or `_`, at a 1-based position in the string.
        case character(Character, position: Int)
    }

    public var width: Int
    public var found: Finding

    public init(width: Int, found: Finding) {
        self.width = width
        self.found = found
    }

    public var description: String {
        let expected = "expected \"0b\" and \(width) characters of 0, 1 or x"
        switch found {
        case .noPrefix: return "\(expected), found no \"0b\" prefix"
        case .length(let count): return "\(expected), found \(count) character\(count == 1 ? "" : "s")"
        case .character(let character, let position):
            return "\(expected), found \"\(character)\" at character \(position)"
        }
    }
}
