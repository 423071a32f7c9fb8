import SwiftVMMemory
import SwiftVMBoot

/// How execve would treat one path: the checks `do_open_execat` makes (a
/// regular file with an x bit; root needs only one), then the binary formats
/// the GuestConfigs kernels have, ELF (binfmt_elf) and `#!` scripts
/// (binfmt_script).
extension InitDiscovery {
    struct Examined {
        var outcome: InitReport.Outcome
        var detail: String

        /// The errno execve returns; 0 when it runs (or when that is not known).
        var errno: Int32 {
            switch outcome {
            case .runs, .undecided: 0
            case .missing: ExecErrno.noEntry
            case .fails(let errno): errno
            }
        }

        static let notDecided = "the check ran out of its work limit first"
        static let undecided = Examined(outcome: .undecided, detail: notDecided)

        static func failure(_ errno: Int32, _ detail: String) -> Examined {
            Examined(outcome: .fails(errno: errno), detail: detail + " (execve fails with \(ExecErrno.name(errno)))")
        }
    }

    struct Examiner {
        let reader: Ext4Reader
        let arch: Architecture

        /// binfmt_script reads the `#!` line from the first BINPRM_BUF_SIZE bytes.
        static let scriptLineLimit = 256
        /// exec_binprm gives up after this many nested interpreters (ELOOP).
        static let maxInterpreterDepth = 5

        func examine(_ path: String, depth: Int = 0) -> Examined {
            let resolution: Ext4Reader.Resolution
            do { resolution = try reader.resolve(path) } catch {
                switch error.kind {
                case .workLimit: return .undecided
                case .tooManyLinks: return .failure(ExecErrno.tooManyLinks, "a symbolic link loop: \(error)")
                case .notADirectory: return .failure(ExecErrno.notADirectory, "\(error)")
                default: return .failure(ExecErrno.ioError, "cannot be read: \(error)")
                }
            }
            var prefix = ""
            if !resolution.links.isEmpty {
                prefix = "a symbolic link (\(Self.describeChain(resolution.links))); \(Self.shorten(resolution.path)): "
            }
            guard let inode = resolution.inode else {
                if resolution.links.isEmpty { return Examined(outcome: .missing, detail: "missing") }
                return Examined(outcome: .missing, detail: prefix + "missing (the link dangles)")
            }
            switch inode.fileType {
            case .regular: break
            case .directory: return .failure(ExecErrno.accessDenied, prefix + "a directory")
            default: return .failure(ExecErrno.accessDenied, prefix + inode.fileType.rawValue + ", not a regular file")
            }
            guard inode.isExecutable else {
                return .failure(ExecErrno.accessDenied, prefix + "not executable (mode \(inode.permissionString), no x bit)")
            }
            let head: [UInt8]
            do { head = try reader.read(inode, maxBytes: 4096) } catch {
                if error.kind == .workLimit { return .undecided }
                return .failure(ExecErrno.ioError, prefix + "cannot be read: \(error)")
            }
            var result: Examined
            if head.starts(with: [0x7f, 0x45, 0x4c, 0x46]) {
                result = examineELF(head, inode: inode)
            } else if head.starts(with: [0x23, 0x21]) {
                result = examineScript(head, depth: depth)
            } else {
                let shown = head.prefix(4).map { hex($0) }.joined(separator: " ")
                result = .failure(
                    ExecErrno.execFormat,
                    head.isEmpty ? "an empty file" : "neither an ELF nor a #! script (it starts with \(shown))")
            }
            if result.outcome == .undecided { return result }
            result.detail = prefix + result.detail
            return result
        }

        /// ELF header checks binfmt_elf makes: little-endian, this machine,
        /// 64-bit, an executable or position-independent type, and a program
        /// interpreter (PT_INTERP) that exists.
        func examineELF(_ head: [UInt8], inode: Ext4Inode) -> Examined {
            guard head.count >= 64 else { return .failure(ExecErrno.execFormat, "a truncated ELF header") }
            let elfClass = head[4]
            let bigEndian = head[5] == 2
            let rawMachine = head.loadLittleEndian(UInt16.self, at: 18) ?? 0
            let machine = bigEndian ? rawMachine.byteSwapped : rawMachine
            let bits = elfClass == 1 ? "32-bit" : elfClass == 2 ? "64-bit" : "invalid-class"
            let name = Self.machineName(machine)
            // Said as letters: "an x86-64", "an AArch64", "an ARM", "an i386".
            let article = name.first.map { "AEIOUaeioux".contains($0) } == true ? "an" : "a"
            let what = "\(article) \(name) ELF (\(bits)\(bigEndian ? ", big-endian" : ""))"
            guard machine == arch.elfMachine, elfClass == 2, !bigEndian else {
                return .failure(
                    ExecErrno.execFormat,
                    "\(what), but the guest is \(arch.rawValue) and runs only \(Self.machineName(arch.elfMachine)) 64-bit ELFs")
            }
            let type = head.loadLittleEndian(UInt16.self, at: 16) ?? 0
            guard type == 2 || type == 3 else {
                return .failure(ExecErrno.execFormat, "\(what) of type \(type), not an executable (ET_EXEC or ET_DYN)")
            }
            let interpreter: String?
            do { interpreter = try programInterpreter(head, inode: inode) } catch {
                if error.kind == .workLimit { return .undecided }
                return .failure(ExecErrno.execFormat, "\(what) whose program headers are damaged: \(error)")
            }
            guard let interpreter else { return Examined(outcome: .runs, detail: "\(what), statically linked") }
            let found: Ext4Reader.Resolution?
            do { found = try reader.resolve(interpreter) } catch {
                if error.kind == .workLimit { return .undecided }
                found = nil
            }
            guard let loader = found?.inode, loader.fileType == .regular else {
                return .failure(
                    ExecErrno.noEntry, "\(what), dynamically linked, but its interpreter \(interpreter) is missing")
            }
            return Examined(outcome: .runs, detail: "\(what), dynamically linked (interpreter \(interpreter))")
        }

        /// The PT_INTERP path of a 64-bit little-endian ELF, nil when static.
        func programInterpreter(_ head: [UInt8], inode: Ext4Inode) throws(Ext4Error) -> String? {
            let offset = head.loadLittleEndian(UInt64.self, at: 0x20) ?? 0
            let entrySize = UInt64(head.loadLittleEndian(UInt16.self, at: 0x36) ?? 0)
            let count = UInt64(head.loadLittleEndian(UInt16.self, at: 0x38) ?? 0)
            if count == 0 { return nil }
            // binfmt_elf refuses program header tables over 64 KiB or with odd entry sizes.
            guard entrySize == 56, count * entrySize <= 65536, offset <= 1 << 20 else {
                throw Ext4Error(.corrupt, "\(count) program headers of \(entrySize) bytes at offset \(offset)")
            }
            let end = Int(offset + count * entrySize)
            let table = end <= head.count ? head : try reader.read(inode, maxBytes: end)
            guard table.count >= end else { throw Ext4Error(.corrupt, "the program headers run past the end of the file") }
            for index in 0..<Int(count) {
                let at = Int(offset) + index * 56
                guard table.loadLittleEndian(UInt32.self, at: at) == 3 else { continue }  // PT_INTERP
                let start = table.loadLittleEndian(UInt64.self, at: at + 8) ?? 0
                let size = table.loadLittleEndian(UInt64.self, at: at + 32) ?? 0
                guard size >= 2, size <= 4096, start <= 16 << 20, start <= inode.size, inode.size - start >= size else {
                    throw Ext4Error(.corrupt, "a PT_INTERP of \(size) bytes at offset \(start)")
                }
                let bytes = try reader.read(inode, maxBytes: Int(start + size))
                return String(decoding: bytes[Int(start)...].prefix { $0 != 0 }, as: UTF8.self)
            }
            return nil
        }

        /// binfmt_script: the interpreter is the first word after `#!` on the
        /// first line, and must itself be executable.
        func examineScript(_ head: [UInt8], depth: Int) -> Examined {
            let limited = head.prefix(Self.scriptLineLimit)
            let line = limited.dropFirst(2).prefix { $0 != 0x0a }
            let words = line.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0d })
            guard let first = words.first else { return .failure(ExecErrno.execFormat, "a #! script with no interpreter") }
            let interpreter = String(decoding: first, as: UTF8.self)
            if line.count == limited.count - 2, first.endIndex == line.endIndex, limited.count == Self.scriptLineLimit {
                return .failure(ExecErrno.execFormat, "a #! script whose interpreter name runs past 256 bytes")
            }
            guard depth < Self.maxInterpreterDepth else {
                return .failure(ExecErrno.tooManyLinks, "a #! script for \(interpreter), nested too deeply")
            }
            let nested = examine(interpreter, depth: depth + 1)
            let detail = "a #! script for \(interpreter); \(interpreter): \(nested.detail)"
            switch nested.outcome {
            case .runs: return Examined(outcome: .runs, detail: detail)
            case .missing: return .failure(ExecErrno.noEntry, "a #! script for \(interpreter), which is missing")
            case .fails(let errno): return Examined(outcome: .fails(errno: errno), detail: detail)
            case .undecided: return .undecided
            }
        }

        /// The links followed, as `a -> b, b -> c`; a chain of many links, or
        /// of long targets, is cut to what a person reads (a crafted image
        /// can make it 40 targets of 4 KiB each).
        static func describeChain(_ links: [Ext4Reader.SymlinkHop]) -> String {
            let hops = links.map { "\(shorten($0.path)) -> \(shorten($0.target))" }
            guard hops.count > 6 else { return hops.joined(separator: ", ") }
            return (hops.prefix(3) + ["... \(hops.count - 5) more ..."] + hops.suffix(2)).joined(separator: ", ")
        }

        /// `text` itself when short, else its start and end around the byte count.
        static func shorten(_ text: String, to limit: Int = 72) -> String {
            guard text.utf8.count > limit else { return text }
            let start = String(decoding: text.utf8.prefix(limit / 2), as: UTF8.self)
            let end = String(decoding: text.utf8.suffix(limit / 4), as: UTF8.self)
            return "\(start)...\(end) (\(text.utf8.count) bytes)"
        }

        static func machineName(_ machine: UInt16) -> String {
            switch machine {
            case 62: "x86-64"
            case 183: "AArch64"
            default: ELFMachine.name(machine)
            }
        }
    }
}
