import SwiftVMMemory
import SwiftVMBoot

/// The two guest architectures swiftvm boots, for asking whether a kernel file suits one.
public enum KernelArchitecture: String, CaseIterable, Sendable {
    case x86_64, aarch64
}

/// What a kernel file is and whether swiftvm can boot it: the format and its
/// header fields, the "Linux version" banner, and the config the kernel
/// embeds (CONFIG_IKCONFIG), if any.
public struct KernelInspection: Sendable {
    /// One labelled fact about the file, e.g. ("entry point", "0x1000000").
    public struct Fact: Equatable, Sendable {
        public var label: String
        public var value: String
    }

    public var format: KernelFormat
    public var facts: [Fact] = []
    /// The banner from "Linux version " up to the end of its line, if found.
    public var version: String?
    /// Why swiftvm cannot boot this file on each architecture; no entry means it can.
    public var problems: [KernelArchitecture: String] = [:]
    /// The decompressed `.config` text, when the kernel embeds one.
    public var embeddedConfig: String?
    /// Why an embedded config was found but could not be read.
    public var embeddedConfigError: String?
    /// For a compressed file that decompressed to something recognisable: what is inside.
    public var contents: [KernelInspection] = []

    /// How much of a file is searched for the banner and the embedded config.
    /// Both live in .rodata, near the start of any kernel image.
    public static let scanLimit = 128 << 20
    /// The most all decompression in one inspection may produce together:
    /// every compressed layer and every embedded config.
    public static let decompressLimit = 64 << 20
    /// The most compressed layers looked into, one inside the other: a
    /// kernel is compressed once (vmlinux.gz, Image.gz), a compressed file of
    /// one at most twice. A file that decompresses to itself would otherwise
    /// be looked into without end.
    public static let maxCompressionLayers = 4

    /// How much one inspection may decompress.
    public struct Limits: Equatable, Sendable {
        /// Compressed layers looked into, one inside the other.
        public var layers: Int
        /// Bytes all decompression together may produce.
        public var decompressedBytes: Int

        public init(layers: Int, decompressedBytes: Int) {
            self.layers = layers
            self.decompressedBytes = decompressedBytes
        }

        public static let standard = Limits(layers: maxCompressionLayers, decompressedBytes: decompressLimit)
    }

    public init(format: KernelFormat) { self.format = format }

    /// Inspects `image`, reading at most ``scanLimit`` bytes of it, and
    /// decompressing at most what `limits` allow: the work and the memory an
    /// inspection takes are bounded whatever the file holds.
    public static func inspect(_ image: some ImageSource, limits: Limits = .standard) -> KernelInspection {
        let count = Int(min(image.size, UInt64(scanLimit)))
        let bytes = try? image.bytes(at: 0, count: count)
        var budget = Budget(limits: limits, left: limits.decompressedBytes)
        return inspect(image, bytes: bytes, layer: 0, budget: &budget)
    }

    /// What is left of an inspection's limits as it goes down the layers.
    struct Budget {
        let limits: Limits
        /// Bytes decompression may still produce.
        var left: Int

        /// Decompresses `data`, counting what it produced; says which limit stopped it.
        mutating func gunzip(_ data: [UInt8]) throws(DecompressionRefused) -> [UInt8] {
            do {
                let output = try Inflate.gunzip(data, limit: left)
                left -= output.count
                return output
            } catch .outputLimitExceeded {
                let used = limits.decompressedBytes - left
                let total = KernelInspection.sizeText(limits.decompressedBytes)
                throw DecompressionRefused(
                    used == 0
                        ? "it decompresses to more than \(total), the most one inspection decompresses"
                        : "it decompresses to more than the \(left) bytes left of the \(total) one inspection "
                            + "decompresses in all (\(used) bytes went to the layers around it)")
            } catch {
                throw DecompressionRefused("\(error)")
            }
        }
    }

    struct DecompressionRefused: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    static func sizeText(_ bytes: Int) -> String {
        bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : "\(bytes) bytes"
    }

    /// Inspects `image`, whose first bytes (up to ``scanLimit``) are `bytes`;
    /// `layer` is how many decompressions it took to get here.
    private static func inspect(
        _ image: some ImageSource, bytes: [UInt8]?, layer: Int, budget: inout Budget
    ) -> KernelInspection {
        let format = KernelFormat.detect(image)
        var result = KernelInspection(format: format)
        // The loader's own checks, less the guest's RAM size, which `run` chooses,
        // and the entry `run` takes by default.
        var entryFacts: [Fact] = []
        do throws(KernelImageError) {
            let plan = try X86KernelPlan(image, protocol: .auto)
            entryFacts.append(Fact(label: "x86_64 entry", value: "\(plan.entry) (\(plan.reason))"))
            if case .bzImage(let layout) = plan.image {
                entryFacts.append(Fact(
                    label: "x86_64 load",
                    value: "protected-mode part (\(layout.kernelSize) bytes after \(layout.setupSectors) setup sectors)"
                        + " at \(hex(layout.loadAddress)); needs RAM up to \(hex(layout.endAddress)) (init_size)"))
            }
        } catch { result.problems[.x86_64] = error.description }
        do throws(Arm64ImageError) { _ = try Arm64ImageLoader.checkedHeader(image) } catch {
            result.problems[.aarch64] = error.description
        }
        guard let bytes else {
            result.facts += entryFacts
            return result
        }
        result.describe(bytes, image: image, layer: layer, budget: &budget)
        result.facts += entryFacts
        return result
    }

    private mutating func describe(_ bytes: [UInt8], image: some ImageSource, layer: Int, budget: inout Budget) {
        facts.append(Fact(label: "size", value: "\(image.size) bytes"))
        switch format {
        case .elf: describeELF(bytes, image: image)
        case .bzImage: describeBzImage(bytes)
        case .arm64Image: describeArm64Image(bytes)
        case .peImage: describePE(bytes)
        case .compressed(let name): describeCompressed(bytes, format: name, layer: layer, budget: &budget)
        case .empty, .unknown: break
        }
        if version == nil { version = Self.banner(in: bytes) }
        readEmbeddedConfig(bytes, budget: &budget)
    }

    // MARK: - Formats

    private mutating func describeELF(_ bytes: [UInt8], image: some ImageSource) {
        guard case .elf(let bits, _, let machineName) = format else { return }
        facts.append(Fact(label: "machine", value: machineName))
        facts.append(Fact(label: "class", value: bits == 0 ? "invalid" : "ELF\(bits)"))
        facts.append(Fact(label: "byte order", value: bytes.count > 5 && bytes[5] == 2 ? "big-endian" : "little-endian"))
        guard bits == 64, let header = ELF64Header(bytes), header.isLittleEndian else { return }
        facts.append(Fact(label: "entry point", value: hex(header.entry)))
        // The segments as stated, for any machine and even when the loader refuses them:
        // the range helps to see why.
        guard let segments = try? VmlinuxLayout.loadSegments(image, header: header) else { return }
        let span = VmlinuxLayout.span(of: segments)
        let count = segments.count
        facts.append(Fact(label: "PT_LOAD", value: "\(count) segment\(count == 1 ? "" : "s"), physical [\(hex(span.lowest)), \(hex(span.end)))"))
    }

    /// The setup header (Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header").
    private mutating func describeBzImage(_ bytes: [UInt8]) {
        guard case .bzImage(let protocolVersion) = format else { return }
        typealias Offset = BzImageLayout.Offset
        facts.append(Fact(label: "boot protocol", value: KernelFormat.protocolString(protocolVersion)))
        if let pointer = bytes.loadLittleEndian(UInt16.self, at: Offset.kernelVersion), pointer != 0 {
            version = Self.text(in: bytes, at: Int(pointer) + 0x200)
        }
        if protocolVersion >= 0x0205, bytes.count > Offset.relocatable {
            facts.append(Fact(label: "relocatable", value: bytes[Offset.relocatable] != 0 ? "yes" : "no"))
        }
        if protocolVersion >= BzImageLayout.minimumProtocol,
            let xloadflags = bytes.loadLittleEndian(UInt16.self, at: Offset.xloadflags)
        {
            facts.append(Fact(label: "64-bit entry", value: xloadflags & BzImageLayout.xlfKernel64 != 0 ? "yes" : "no"))
        }
        if protocolVersion >= 0x0208, bytes.count > Offset.setupSectors,
            let payloadOffset = bytes.loadLittleEndian(UInt32.self, at: Offset.payloadOffset),
            let payloadLength = bytes.loadLittleEndian(UInt32.self, at: Offset.payloadLength)
        {
            // The protected-mode part follows the boot sector and the setup sectors.
            let start = (BzImageLayout.setupSectors(bytes[Offset.setupSectors]) + 1) * 512 + Int(payloadOffset)
            let head = start < bytes.count ? Array(bytes[start..<min(bytes.count, start + 16)]) : []
            let compression = KernelFormat.compressionMagics.first { head.starts(with: $0.0) }?.1 ?? "unknown"
            facts.append(Fact(label: "payload", value: "\(payloadLength) bytes, \(compression)-compressed"))
        }
    }

    private mutating func describeArm64Image(_ bytes: [UInt8]) {
        guard let header = Arm64ImageHeader(bytes) else { return }
        facts.append(Fact(label: "text offset", value: hex(header.effectiveTextOffset)))
        facts.append(Fact(label: "image size", value: header.imageSize == 0 ? "0 (a kernel before 3.17)" : "\(header.imageSize) bytes"))
        facts.append(Fact(label: "page size", value: header.pageSize.description))
        facts.append(Fact(label: "byte order", value: header.isBigEndian ? "big-endian" : "little-endian"))
        facts.append(Fact(label: "EFI stub", value: bytes.starts(with: Array("MZ".utf8)) ? "yes (PE/COFF header)" : "no"))
    }

    private mutating func describePE(_ bytes: [UInt8]) {
        // e_lfanew at 0x3c points at "PE\0\0", followed by the COFF machine field.
        guard let peOffset = bytes.loadLittleEndian(UInt32.self, at: 0x3c).map(Int.init),
            bytes.loadLittleEndian(UInt32.self, at: peOffset) == 0x0000_4550,
            let machine = bytes.loadLittleEndian(UInt16.self, at: peOffset + 4)
        else { return }
        let names: [UInt16: String] = [0x8664: "x86_64", 0xaa64: "AArch64", 0x14c: "i386", 0x5064: "RISC-V 64"]
        facts.append(Fact(label: "machine", value: names[machine] ?? "PE machine \(hex(UInt64(machine)))"))
        // An EFI "zboot" image: "zimg" at offset 4 and the compressor's name at 0x18.
        if bytes.count > 0x20, bytes[4..<8].elementsEqual("zimg".utf8) {
            let name = String(decoding: bytes[0x18..<0x20].prefix { $0 != 0 }, as: UTF8.self)
            facts.append(Fact(label: "payload", value: "EFI zboot image, \(name)-compressed"))
        }
    }

    /// Looks inside a gzip file, unless that would be one layer too many.
    private mutating func describeCompressed(_ bytes: [UInt8], format name: String, layer: Int, budget: inout Budget) {
        guard name == "gzip" else { return }
        guard layer < budget.limits.layers else {
            let layers = budget.limits.layers
            facts.append(Fact(
                label: "gzip",
                value: "not decompressed: this is compressed layer \(layer + 1), and swiftvm looks into at most \(layers) "
                    + "layer\(layers == 1 ? "" : "s") of compression, one inside the other (a file that decompresses "
                    + "to itself would never end)"))
            return
        }
        let inner: [UInt8]
        do { inner = try budget.gunzip(bytes) } catch {
            facts.append(Fact(label: "gzip", value: "cannot decompress: \(error)"))
            return
        }
        // The decompressed bytes are the inner file and its first bytes at once: no second copy.
        var inside = Self.inspect(
            InMemoryImage(inner), bytes: inner.count <= Self.scanLimit ? inner : Array(inner.prefix(Self.scanLimit)),
            layer: layer + 1, budget: &budget)
        inside.facts.insert(Fact(label: "decompressed", value: "\(inner.count) bytes"), at: 0)
        contents = [inside]
    }

    // MARK: - Banner and embedded config

    static let bannerMarker = Array("Linux version ".utf8)
    static let configStart = Array("IKCFG_ST".utf8)
    static let configEnd = Array("IKCFG_ED".utf8)

    /// "Linux version 6.1.x (...) #1 SMP ...", as in linux_banner.
    static func banner(in bytes: [UInt8]) -> String? {
        var from = 0
        while let index = find(bannerMarker, in: bytes, from: from) {
            // linux_banner continues with a digit; format strings such as "Linux version %s" do not.
            let next = index + bannerMarker.count
            if next < bytes.count, bytes[next] >= 0x30, bytes[next] <= 0x39 { return text(in: bytes, at: index) }
            from = next
        }
        return nil
    }

    /// kernel/configs.c: the gzip-compressed .config sits between "IKCFG_ST" and "IKCFG_ED".
    private mutating func readEmbeddedConfig(_ bytes: [UInt8], budget: inout Budget) {
        guard let start = Self.find(Self.configStart, in: bytes, from: 0) else { return }
        let dataStart = start + Self.configStart.count
        guard let end = Self.find(Self.configEnd, in: bytes, from: dataStart) else {
            embeddedConfigError = "found IKCFG_ST but no IKCFG_ED after it; the file is truncated"
            return
        }
        do throws(DecompressionRefused) {
            let text = try budget.gunzip(Array(bytes[dataStart..<end]))
            embeddedConfig = String(decoding: text, as: UTF8.self)
        } catch {
            embeddedConfigError = "the embedded config cannot be decompressed: \(error)"
        }
    }

    /// The printable text at `offset` up to a newline, NUL or 256 bytes.
    static func text(in bytes: [UInt8], at offset: Int) -> String? {
        guard offset >= 0, offset < bytes.count else { return nil }
        let run = bytes[offset..<min(bytes.count, offset + 256)].prefix { $0 >= 0x20 && $0 < 0x7f }
        return run.isEmpty ? nil : String(decoding: run, as: UTF8.self)
    }

    /// The first index of `needle` in `bytes` at or after `from`.
    static func find(_ needle: [UInt8], in bytes: [UInt8], from: Int) -> Int? {
        guard let first = needle.first, bytes.count >= needle.count else { return nil }
        return bytes.withUnsafeBufferPointer { hay -> Int? in
            needle.withUnsafeBufferPointer { pattern -> Int? in
                var index = max(from, 0)
                let last = hay.count - pattern.count
                while index <= last {
                    if hay[index] == first {
                        var matched = 1
                        while matched < pattern.count, hay[index + matched] == pattern[matched] { matched += 1 }
                        if matched == pattern.count { return index }
                    }
                    index += 1
                }
                return nil
            }
        }
    }
}
