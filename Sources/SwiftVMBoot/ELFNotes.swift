import SwiftVMMemory

/// The owners of an ELF file's notes (PT_NOTE segments): a Linux vmlinux
/// carries notes owned by "Linux" (and "Xen" for its PVH entry), which tells a
/// real kernel apart from other ELF payloads.
public enum ELFNotes {
    /// Note segments larger than this are not read.
    static let maxSegmentBytes: UInt64 = 64 << 10

    /// The distinct owner names of the notes in an x86_64 ELF64 file, in file
    /// order; empty for anything else or on any inconsistency.
    public static func owners(_ image: some ImageSource) -> [String] {
        guard let header = try? KernelLoader.elfHeader(image) else { return [] }
        let count = Int(header.programHeaderCount)
        let size = ELF64Header.programHeaderSize
        guard count > 0, count < 512,
            let table = try? image.bytes(at: header.programHeaderOffset, count: count * size)
        else { return [] }
        var owners: [String] = []
        for index in 0..<count {
            guard let program = ELF64ProgramHeader(table, at: index * size), program.type == 4,  // PT_NOTE
                program.fileSize <= maxSegmentBytes,
                let notes = try? image.bytes(at: program.offset, count: Int(program.fileSize))
            else { continue }
            // Each note: namesz, descsz, type (u32 each), name, desc, each padded to 4 bytes.
            var offset = 0
            while offset + 12 <= notes.count {
                let nameSize = Int(notes.loadLittleEndian(UInt32.self, at: offset) ?? 0)
                let descSize = Int(notes.loadLittleEndian(UInt32.self, at: offset + 4) ?? 0)
                let nameStart = offset + 12
                guard nameSize <= 256, descSize <= notes.count, nameStart + nameSize <= notes.count else { break }
                let name = String(decoding: notes[nameStart..<nameStart + nameSize].prefix { $0 != 0 }, as: UTF8.self)
                if !name.isEmpty && !owners.contains(name) { owners.append(name) }
                offset = nameStart + (nameSize + 3) & ~3
                offset += (descSize + 3) & ~3
            }
        }
        return owners
    }
}
