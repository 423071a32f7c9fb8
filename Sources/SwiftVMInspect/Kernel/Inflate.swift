import SwiftVMMemory

/// Why compressed data could not be decompressed.
public enum InflateError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The input ends before the last block does.
    case truncated
    /// A gzip member does not start with 1f 8b, or uses a method other than deflate (8).
    case notGzip
    /// Block type 3, which RFC 1951 reserves.
    case reservedBlockType
    /// A stored block whose LEN and NLEN are not complements.
    case storedLengthMismatch
    /// Code lengths that do not form a usable Huffman code, or a code not in the table.
    case badHuffmanCode
    /// A back-reference to before the start of the output.
    case distanceTooFar(distance: Int, available: Int)
    /// The output would exceed the caller's limit.
    case outputLimitExceeded(limit: Int)
    /// The gzip trailer's CRC-32 or size does not match what was decompressed.
    case checksumMismatch

    public var description: String {
        switch self {
        case .truncated: "the compressed data is truncated"
        case .notGzip: "not gzip data (no 1f 8b 08 header)"
        case .reservedBlockType: "corrupt deflate data: reserved block type 3"
        case .storedLengthMismatch: "corrupt deflate data: stored block length check failed"
        case .badHuffmanCode: "corrupt deflate data: invalid Huffman code"
        case .distanceTooFar(let distance, let available):
            "corrupt deflate data: a match reaches \(distance) bytes back with only \(available) written"
        case .outputLimitExceeded(let limit): "the data decompresses to more than \(limit) bytes"
        case .checksumMismatch: "the gzip CRC-32 or length does not match the data"
        }
    }
}

/// A DEFLATE decoder (RFC 1951: stored, fixed-Huffman and dynamic-Huffman
/// blocks) with a gzip wrapper (RFC 1952), for reading the config a kernel
/// embeds (CONFIG_IKCONFIG). Every read is bounds-checked and the output is
/// capped, so corrupt or hostile input ends in an ``InflateError``.
public enum Inflate {
    /// Decompresses the gzip member at the start of `data` and checks its
    /// trailer. Bytes after the member (such as the "IKCFG_ED" marker) are ignored.
    public static func gunzip(_ data: [UInt8], limit: Int = 64 << 20) throws(InflateError) -> [UInt8] {
        // RFC 1952 §2.3: ID1 ID2 CM FLG MTIME(4) XFL OS, then optional fields.
        guard data.count >= 10 else { throw data.starts(with: [0x1f, 0x8b]) || data.count < 2 ? .truncated : .notGzip }
        guard data[0] == 0x1f, data[1] == 0x8b, data[2] == 8 else { throw .notGzip }
        let flags = data[3]
        var position = 10
        if flags & 0x04 != 0 {  // FEXTRA: XLEN, then XLEN bytes
            guard position + 2 <= data.count else { throw .truncated }
            position += 2 + (Int(data[position]) | Int(data[position + 1]) << 8)
        }
        for flag: UInt8 in [0x08, 0x10] where flags & flag != 0 {  // FNAME, FCOMMENT: zero-terminated
            while position < data.count, data[position] != 0 { position += 1 }
            position += 1
        }
        if flags & 0x02 != 0 { position += 2 }  // FHCRC
        guard position <= data.count else { throw .truncated }
        var reader = BitReader(data, at: position)
        let output = try inflate(&reader, limit: limit)
        // ISIZE and CRC32, little-endian, after the last block's final byte.
        let trailer = reader.byteAlignedPosition
        guard trailer + 8 <= data.count else { throw .truncated }
        let crc = data.loadLittleEndian(UInt32.self, at: trailer)
        let size = data.loadLittleEndian(UInt32.self, at: trailer + 4)
        guard crc == CRC32.checksum(output), size == UInt32(truncatingIfNeeded: output.count) else { throw .checksumMismatch }
        return output
    }

    /// Decompresses raw DEFLATE data (no zlib or gzip wrapper).
    public static func inflate(_ data: [UInt8], limit: Int = 64 << 20) throws(InflateError) -> [UInt8] {
        var reader = BitReader(data, at: 0)
        return try inflate(&reader, limit: limit)
    }

    static func inflate(_ reader: inout BitReader, limit: Int) throws(InflateError) -> [UInt8] {
        var output: [UInt8] = []
        var last = false
        while !last {
            last = try reader.bits(1) == 1
            switch try reader.bits(2) {
            case 0: try storedBlock(&reader, into: &output, limit: limit)
            case 1: try huffmanBlock(&reader, Huffman.fixedLiterals, Huffman.fixedDistances, into: &output, limit: limit)
            case 2:
                let (literals, distances) = try dynamicTables(&reader)
                try huffmanBlock(&reader, literals, distances, into: &output, limit: limit)
            default: throw .reservedBlockType
            }
        }
        return output
    }

    /// RFC 1951 §3.2.4: LEN, NLEN, then LEN literal bytes from the next byte boundary.
    private static func storedBlock(_ reader: inout BitReader, into output: inout [UInt8], limit: Int) throws(InflateError) {
        reader.alignToByte()
        let length = try reader.bits(16)
        let complement = try reader.bits(16)
        guard length ^ complement == 0xffff else { throw .storedLengthMismatch }
        guard output.count + length <= limit else { throw .outputLimitExceeded(limit: limit) }
        try reader.copyBytes(length, into: &output)
    }

    // RFC 1951 §3.2.5: base lengths and extra bits for codes 257-285 and distance codes 0-29.
    private static let lengthBase: [Int] = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    private static let lengthExtra: [Int] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    private static let distanceBase: [Int] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ]
    private static let distanceExtra: [Int] = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    private static func huffmanBlock(
        _ reader: inout BitReader, _ literals: Huffman, _ distances: Huffman, into output: inout [UInt8], limit: Int
    ) throws(InflateError) {
        while true {
            let symbol = try literals.decode(&reader)
            if symbol < 256 {
                guard output.count < limit else { throw .outputLimitExceeded(limit: limit) }
                output.append(UInt8(symbol))
                continue
            }
            if symbol == 256 { return }
            let lengthCode = symbol - 257
            guard lengthCode < lengthBase.count else { throw .badHuffmanCode }
            let length = lengthBase[lengthCode] + (try reader.bits(lengthExtra[lengthCode]))
            let distanceCode = try distances.decode(&reader)
            guard distanceCode < distanceBase.count else { throw .badHuffmanCode }
            let distance = distanceBase[distanceCode] + (try reader.bits(distanceExtra[distanceCode]))
            guard distance <= output.count else { throw .distanceTooFar(distance: distance, available: output.count) }
            guard output.count + length <= limit else { throw .outputLimitExceeded(limit: limit) }
            // Byte by byte: a match may overlap the bytes it is producing.
            var from = output.count - distance
            for _ in 0..<length {
                output.append(output[from])
                from += 1
            }
        }
    }

    /// RFC 1951 §3.2.7: the code-length code, then the literal/length and
    /// distance code lengths it encodes (with repeat codes 16, 17, 18).
    private static func dynamicTables(_ reader: inout BitReader) throws(InflateError) -> (Huffman, Huffman) {
        let literalCount = try reader.bits(5) + 257
        let distanceCount = try reader.bits(5) + 1
        let codeLengthCount = try reader.bits(4) + 4
        guard literalCount <= 286, distanceCount <= 30 else { throw .badHuffmanCode }
        let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]
        var codeLengthLengths = [Int](repeating: 0, count: 19)
        for index in 0..<codeLengthCount { codeLengthLengths[order[index]] = try reader.bits(3) }
        let codeLengthCode = try Huffman(lengths: codeLengthLengths)

        var lengths: [Int] = []
        let total = literalCount + distanceCount
        while lengths.count < total {
            let symbol = try codeLengthCode.decode(&reader)
            let repeatCount: Int
            let repeated: Int
            switch symbol {
            case 0...15:
                lengths.append(symbol)
                continue
            case 16:
                guard let previous = lengths.last else { throw .badHuffmanCode }
                repeated = previous
                repeatCount = 3 + (try reader.bits(2))
            case 17:
                repeated = 0
                repeatCount = 3 + (try reader.bits(3))
            default:
                repeated = 0
                repeatCount = 11 + (try reader.bits(7))
            }
            guard lengths.count + repeatCount <= total else { throw .badHuffmanCode }
            lengths += repeatElement(repeated, count: repeatCount)
        }
        // The end-of-block symbol must be encodable, or the block never ends.
        guard lengths[256] != 0 else { throw .badHuffmanCode }
        return (try Huffman(lengths: Array(lengths[..<literalCount])), try Huffman(lengths: Array(lengths[literalCount...])))
    }
}

/// Reads DEFLATE's bit stream: least significant bit of each byte first.
struct BitReader {
    private let data: [UInt8]
    private var position: Int
    private var buffer: UInt64 = 0
    private var count = 0

    init(_ data: [UInt8], at position: Int) {
        self.data = data
        self.position = position
    }

    /// The next `n` (0...24) bits as an integer, first bit lowest.
    mutating func bits(_ n: Int) throws(InflateError) -> Int {
        while count < n {
            guard position < data.count else { throw .truncated }
            buffer |= UInt64(data[position]) << count
            position += 1
            count += 8
        }
        let value = Int(buffer & ((1 << n) - 1))
        buffer >>= n
        count -= n
        return value
    }

    /// Drops the bits left in the current byte.
    mutating func alignToByte() {
        buffer >>= count % 8
        count -= count % 8
    }

    /// Copies `n` whole bytes (after ``alignToByte()``).
    mutating func copyBytes(_ n: Int, into output: inout [UInt8]) throws(InflateError) {
        // Whole bytes still in the bit buffer come first.
        var remaining = n
        while remaining > 0, count >= 8 {
            output.append(UInt8(truncatingIfNeeded: buffer))
            buffer >>= 8
            count -= 8
            remaining -= 1
        }
        guard remaining <= data.count - position else { throw .truncated }
        output += data[position..<position + remaining]
        position += remaining
    }

    /// Where the next whole byte starts, once the bits of a partly read byte are dropped.
    var byteAlignedPosition: Int { position - count / 8 }
}

/// A canonical Huffman code (RFC 1951 §3.2.2), decoded one bit at a time
/// through the count of codes of each length: small, and fast enough for a
/// few hundred kilobytes of kernel config.
struct Huffman: Sendable {
    /// How many codes have each length, 0...15.
    private var counts = [Int](repeating: 0, count: 16)
    /// The symbols, ordered by code length and then by symbol.
    private var symbols: [Int] = []

    init(lengths: [Int]) throws(InflateError) {
        for length in lengths { counts[length] += 1 }
        counts[0] = 0
        // Over-subscribed codes cannot be decoded; incomplete ones are
        // allowed (RFC 1951 permits a single distance code).
        var left = 1
        for length in 1...15 {
            left = left * 2 - counts[length]
            guard left >= 0 else { throw .badHuffmanCode }
        }
        for length in 1...15 {
            for (symbol, symbolLength) in lengths.enumerated() where symbolLength == length { symbols.append(symbol) }
        }
    }

    func decode(_ reader: inout BitReader) throws(InflateError) -> Int {
        var code = 0, first = 0, index = 0
        for length in 1...15 {
            code |= try reader.bits(1)
            let count = counts[length]
            if code - first < count { return symbols[index + code - first] }
            index += count
            first = (first + count) << 1
            code <<= 1
        }
        throw .badHuffmanCode
    }

    static let fixedLiterals: Huffman = {
        let lengths = [Int](repeating: 8, count: 144) + [Int](repeating: 9, count: 112) + [Int](repeating: 7, count: 24) + [Int](repeating: 8, count: 8)
        return (try? Huffman(lengths: lengths)) ?? Huffman()
    }()
    static let fixedDistances: Huffman = (try? Huffman(lengths: [Int](repeating: 5, count: 30))) ?? Huffman()

    private init() {}
}

/// CRC-32 as gzip uses it (reflected polynomial 0xEDB88320).
enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 != 0 ? 0xedb8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xffff_ffff
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xff)] ^ (crc >> 8) }
        return crc ^ 0xffff_ffff
    }
}
