import Glibc
internal import CSwiftVM

/// swiftvm's built-in allow-lists, one per thread kind, as data: each entry
/// is a system call, with the argument checks it must pass where that
/// matters. docs/security.md says why each is there; `swiftvm seccomp-probe
/// --print-default` prints them in the filter-file format.
///
/// They were found by tracing (`strace -f`) the test guest with every device
/// (drives with both engines, net, vsock, balloon, entropy), Firecracker's
/// API, a Linux boot to user space, SIGUSR1 reports, pause and resume, and
/// every way a VM stops. Anything else a thread calls raises SIGSYS, and the
/// process ends with status 148 naming the call.
public enum SeccompLists {
    /// The values some checks compare with, known only in the running process.
    public struct Signals: Sendable {
        /// nil: any process (a filter file written for later runs).
        public var processID: UInt64?
        public var vcpuKick: UInt64

        public init(processID: UInt64?, vcpuKick: UInt64) {
            self.processID = processID
            self.vcpuKick = vcpuKick
        }
    }

    /// What every thread of the program does once it runs: memory for the
    /// allocator and thread stacks (never executable), locks, signal masks,
    /// time, its log lines, and its end.
    public static let common: [SeccompRule] = [
        // Memory: the allocator's arenas, large buffers, thread stacks.
        .allow("brk"),
        .allow("mmap", .clear(2, UInt64(PROT_EXEC))),
        .allow("mprotect", .clear(2, UInt64(PROT_EXEC))),
        .allow("mremap"),
        .allow("munmap"),
        // Freed memory and thread stacks go back; the balloon's pages too.
        .allow("madvise", .equals(2, UInt64(MADV_DONTNEED))),
        // Locks (Mutex, pthread_join) and waits.
        .allow("futex"),
        .allow("sched_yield"),
        // Signal masks (SIGPIPE off, the vCPU kick on) and the kick's handler.
        .allow("rt_sigprocmask"),
        .allow("rt_sigreturn"),
        // Time: the vDSO serves most; CPU time (the boot timer's report) and sleeps do not.
        .allow("clock_gettime"),
        .allow("clock_nanosleep"),
        .allow("nanosleep"),
        .allow("restart_syscall"),
        // pthread_kill, mutexes and the log ask who they are.
        .allow("getpid"),
        .allow("gettid"),
        // Log lines name their thread (pthread_getname_np).
        .allow("prctl", .equals(0, UInt64(PR_GET_NAME))),
        // Log lines, eventfd signals (interrupts, doorbells, the exit latch).
        .allow("write"),
        // A violation puts an interactive terminal back before the process ends.
        SeccompRule("ioctl", [.equals(0, 0), .equals(1, SeccompIoctl.tcsets.request)]),
        // The thread's end and the process's.
        .allow("exit"),
        .allow("exit_group"),
    ]

    /// For threads that open no file: glibc's malloc opens
    /// /proc/sys/vm/overcommit_memory the first time it gives a thread's heap
    /// back to the kernel (after a large free), and takes a failed open to
    /// mean it may. Failing the call keeps such a free from ending the process
    /// and still opens nothing.
    public static let noOpen = SeccompRule("openat", errno: EACCES)

    /// `swiftvm-vcpuN`: `KVM_RUN`, the registers for reports, and what a
    /// guest's MMIO write to a virtio device does synchronously: activating
    /// a device subscribes its back end to the event loop, virtio-net sets
    /// the TAP's offloads, a vsock reset closes its host connections.
    public static let vcpu: [SeccompRule] = common + [
        noOpen,
        // A paused vCPU waits on the gate's eventfd.
        .allow("poll"),
        .allow("ppoll"),
        .allow("epoll_ctl"),
        .allow("close"),
    ] + SeccompRule.ioctls([
        .kvmRun,
        // SIGUSR1 and pause: each vCPU reads its own state.
        .kvmGetRegs, .kvmGetSregs, .kvmGetMPState, .kvmTranslate,
        // The guest's virtio-net features, at activation and reset.
        .tunSetOffload,
    ])

    /// `swiftvm-events`: virtio queues and their back ends (drives with both
    /// engines, TAP frames, vsock's Unix sockets, the balloon, entropy), the
    /// console, timers, and what the front end subscribes (signals: the
    /// SIGUSR1 report; Firecracker's metrics).
    public static func events(_ signals: Signals) -> [SeccompRule] {
        common + [
            noOpen,
            .allow("epoll_wait"),
            .allow("epoll_pwait"),
            .allow("epoll_ctl"),
            // eventfds, signalfd, console input, vsock connections; TAP frames.
            .allow("read"),
            .allow("readv"),
            .allow("writev"),
            // Drives, engine=sync: reads, writes and flushes.
            .allow("pread64"),
            .allow("pwrite64"),
            .allow("fsync"),
            // Drives, engine=async: the ring was set up when the drive was opened.
            .allow("io_uring_enter"),
            // vsock: host connections in, guest connections out to <uds>_PORT.
            .allow("accept4"),
            .allow("socket", .equals(0, UInt64(AF_UNIX))),
            .allow("connect"),
            .allow("sendto"),
            .allow("shutdown"),
            .allow("close"),
            // virtio-rng.
            .allow("getrandom"),
            // The console's last flush; a SIGUSR1 report waits for the vCPUs' answers.
            .allow("poll"),
            .allow("ppoll"),
            // The console-silence warning asks whether KVM emulates (/sys/module).
            .allow("access"),
        ] + kicks(signals)
    }

    /// The front end's thread once the VM runs (`swiftvm run`, Firecracker
    /// mode): it waits for the exit latch, kicks and joins the vCPUs, reads
    /// their registers at a stop, names the symbols of a crash (the kernel
    /// file was opened before the filters), restores the terminal, removes
    /// the socket files it made, and tears the VM down.
    public static func main(_ signals: Signals) -> [SeccompRule] {
        common + [
            .allow("read"),
            .allow("poll"),
            .allow("ppoll"),
            .allow("close"),
            .allow("pread64"),
            .allow("lseek"),
            // Reading only: /proc/self/status for the debug memory report.
            .allow("openat", .clear(2, UInt64(O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND))),
            .allow("newfstatat"),
            .allow("fstat"),
            // The vsock and API socket files (lstat first: only its own).
            .allow("unlink"),
            // Debug: how much guest RAM is resident.
            .allow("mincore"),
            // The boot diagnosis asks whether KVM emulates (/sys/module).
            .allow("access"),
        ] + kicks(signals) + SeccompRule.ioctls([
            .kvmGetRegs, .kvmGetSregs, .kvmGetMPState, .kvmTranslate,
            .tcgets, .tcsets, .tcsetsw, .tcsetsf,
        ])
    }

    /// Firecracker mode's API thread: HTTP on its Unix socket (SwiftNIO),
    /// and, on `InstanceStart`, the whole build of the VM (files, KVM, the
    /// TAP, the vsock listener, io_uring rings) and the start of its
    /// threads, which begin under this filter. `SeccompPolicy.rules(for:)`
    /// adds the event loop's and the vCPUs' lists and `loader`.
    public static func api(_ signals: Signals) -> [SeccompRule] {
        common + [
            // HTTP/1.1 on the Unix socket, and SwiftNIO's own event loop.
            .allow("epoll_create"),
            .allow("epoll_create1"),
            .allow("epoll_wait"),
            .allow("epoll_pwait"),
            .allow("epoll_ctl"),
            .allow("eventfd2"),
            .allow("timerfd_create"),
            .allow("timerfd_settime"),
            .allow("accept4"),
            .allow("read"),
            .allow("readv"),
            .allow("writev"),
            .allow("getsockname"),
            .allow("getpeername"),
            .allow("shutdown"),
            .allow("close"),
            .allow("fcntl", .equals(1, UInt64(F_GETFD))),
            .allow("fcntl", .equals(1, UInt64(F_SETFD))),
            .allow("fcntl", .equals(1, UInt64(F_GETFL))),
            .allow("fcntl", .equals(1, UInt64(F_SETFL))),
            // InstanceStart builds the VM: the kernel, drives (locked), the
            // console, log and metrics files, /dev/kvm, /dev/net/tun.
            .allow("openat"),
            .allow("newfstatat"),
            .allow("fstat"),
            .allow("access"),
            .allow("pread64"),
            .allow("lseek"),
            .allow("flock"),
            .allow("getuid"),
            .allow("geteuid"),
            .allow("getrandom"),
            .allow("io_uring_setup"),
            // An engine=async drive's ring signals an eventfd when I/O completes.
            .allow("io_uring_register"),
            // The vsock listener (and whether another VMM listens there); the
            // TAP's flags (SIOCGIFFLAGS) and index (if_nametoindex).
            .allow("socket", .equals(0, UInt64(AF_UNIX))),
            .allow("socket", .equals(0, UInt64(AF_INET))),
            .allow("bind"),
            .allow("listen"),
            .allow("connect"),
            .allow("unlink"),
            // Threads only, never processes: clone3's flags live in memory a
            // filter cannot read, so it fails with ENOSYS and glibc falls back
            // to clone, whose flags are checked.
            // CLONE_THREAD | CLONE_VM (0x10000 | 0x100) both set.
            .allow("clone", SeccompCondition(index: 0, mask: 0x10100, value: 0x10100)),
            SeccompRule("clone3", errno: ENOSYS),
            // What a new thread does before it loads its own filter.
            .allow("rseq"),
            .allow("set_robust_list"),
            .allow("prctl", .equals(0, UInt64(PR_SET_NAME))),
            // SwiftNIO's shutdown runs on Dispatch's threads, which it starts.
            .allow("setpriority"),
            // Pause waits for the vCPUs to be held.
            .allow("poll"),
            .allow("ppoll"),
        ] + kicks(signals) + SeccompRule.ioctls(SeccompIoctl.build)
    }

    /// What loading a filter takes, for a thread that runs under another one
    /// (`svm_seccomp_load`): no_new_privs, then the filter itself.
    public static let loader: [SeccompRule] = [
        .allow("prctl", .equals(0, UInt64(PR_SET_NO_NEW_PRIVS))),
        // SECCOMP_SET_MODE_FILTER (1), no flags.
        .allow("seccomp", .equals(0, 1), .equals(1, 0)),
    ]

    /// `tgkill` to this process's threads only, with the vCPU kick (pause,
    /// reports, the stop) or SIGABRT (an assertion that fails still aborts).
    static func kicks(_ signals: Signals) -> [SeccompRule] {
        let process = signals.processID.map { [SeccompCondition.equals(0, $0)] } ?? []
        return [
            SeccompRule("tgkill", process + [.equals(2, signals.vcpuKick)]),
            SeccompRule("tgkill", process + [.equals(2, UInt64(SIGABRT))]),
        ]
    }
}

extension SeccompIoctl {
    // /dev/kvm
    public static let kvmGetAPIVersion = SeccompIoctl("KVM_GET_API_VERSION", UInt64(SVM_KVM_GET_API_VERSION))
    public static let kvmCreateVM = SeccompIoctl("KVM_CREATE_VM", UInt64(SVM_KVM_CREATE_VM))
    public static let kvmCheckExtension = SeccompIoctl("KVM_CHECK_EXTENSION", UInt64(SVM_KVM_CHECK_EXTENSION))
    public static let kvmGetVCPUMmapSize = SeccompIoctl("KVM_GET_VCPU_MMAP_SIZE", UInt64(SVM_KVM_GET_VCPU_MMAP_SIZE))
    public static let kvmGetSupportedCPUID = SeccompIoctl("KVM_GET_SUPPORTED_CPUID", UInt64(SVM_KVM_GET_SUPPORTED_CPUID))
    public static let kvmGetMSRIndexList = SeccompIoctl("KVM_GET_MSR_INDEX_LIST", UInt64(SVM_KVM_GET_MSR_INDEX_LIST))
    // a VM
    public static let kvmCreateVCPU = SeccompIoctl("KVM_CREATE_VCPU", UInt64(SVM_KVM_CREATE_VCPU))
    public static let kvmSetUserMemoryRegion = SeccompIoctl("KVM_SET_USER_MEMORY_REGION", UInt64(SVM_KVM_SET_USER_MEMORY_REGION))
    public static let kvmSetTSSAddr = SeccompIoctl("KVM_SET_TSS_ADDR", UInt64(SVM_KVM_SET_TSS_ADDR))
    public static let kvmSetIdentityMapAddr = SeccompIoctl("KVM_SET_IDENTITY_MAP_ADDR", UInt64(SVM_KVM_SET_IDENTITY_MAP_ADDR))
    public static let kvmCreateIRQChip = SeccompIoctl("KVM_CREATE_IRQCHIP", UInt64(SVM_KVM_CREATE_IRQCHIP))
    public static let kvmCreatePIT2 = SeccompIoctl("KVM_CREATE_PIT2", UInt64(SVM_KVM_CREATE_PIT2))
    public static let kvmIRQFD = SeccompIoctl("KVM_IRQFD", UInt64(SVM_KVM_IRQFD))
    public static let kvmIOEventFD = SeccompIoctl("KVM_IOEVENTFD", UInt64(SVM_KVM_IOEVENTFD))
    public static let kvmIRQLine = SeccompIoctl("KVM_IRQ_LINE", UInt64(SVM_KVM_IRQ_LINE))
    // a vCPU
    public static let kvmRun = SeccompIoctl("KVM_RUN", UInt64(SVM_KVM_RUN))
    public static let kvmGetRegs = SeccompIoctl("KVM_GET_REGS", UInt64(SVM_KVM_GET_REGS))
    public static let kvmSetRegs = SeccompIoctl("KVM_SET_REGS", UInt64(SVM_KVM_SET_REGS))
    public static let kvmGetSregs = SeccompIoctl("KVM_GET_SREGS", UInt64(SVM_KVM_GET_SREGS))
    public static let kvmSetSregs = SeccompIoctl("KVM_SET_SREGS", UInt64(SVM_KVM_SET_SREGS))
    public static let kvmGetFPU = SeccompIoctl("KVM_GET_FPU", UInt64(SVM_KVM_GET_FPU))
    public static let kvmSetFPU = SeccompIoctl("KVM_SET_FPU", UInt64(SVM_KVM_SET_FPU))
    public static let kvmSetCPUID2 = SeccompIoctl("KVM_SET_CPUID2", UInt64(SVM_KVM_SET_CPUID2))
    public static let kvmGetMSRs = SeccompIoctl("KVM_GET_MSRS", UInt64(SVM_KVM_GET_MSRS))
    public static let kvmSetMSRs = SeccompIoctl("KVM_SET_MSRS", UInt64(SVM_KVM_SET_MSRS))
    public static let kvmGetLAPIC = SeccompIoctl("KVM_GET_LAPIC", UInt64(SVM_KVM_GET_LAPIC))
    public static let kvmSetLAPIC = SeccompIoctl("KVM_SET_LAPIC", UInt64(SVM_KVM_SET_LAPIC))
    public static let kvmGetMPState = SeccompIoctl("KVM_GET_MP_STATE", UInt64(SVM_KVM_GET_MP_STATE))
    public static let kvmTranslate = SeccompIoctl("KVM_TRANSLATE", UInt64(SVM_KVM_TRANSLATE))
    // the TAP (/dev/net/tun) and its interface
    public static let tunSetIFF = SeccompIoctl("TUNSETIFF", UInt64(SVM_TUNSETIFF))
    public static let tunGetIFF = SeccompIoctl("TUNGETIFF", UInt64(SVM_TUNGETIFF))
    public static let tunGetFeatures = SeccompIoctl("TUNGETFEATURES", UInt64(SVM_TUNGETFEATURES))
    public static let tunSetOffload = SeccompIoctl("TUNSETOFFLOAD", UInt64(SVM_TUNSETOFFLOAD))
    public static let tunSetVnetHdrSz = SeccompIoctl("TUNSETVNETHDRSZ", UInt64(SVM_TUNSETVNETHDRSZ))
    public static let siocGIFFlags = SeccompIoctl("SIOCGIFFLAGS", 0x8913)
    public static let siocGIFIndex = SeccompIoctl("SIOCGIFINDEX", 0x8933)
    // a drive on a block device: _IOR(0x12, 114, size_t)
    public static let blkGetSize64 = SeccompIoctl("BLKGETSIZE64", 0x8008_1272)
    // the terminal
    public static let tcgets = SeccompIoctl("TCGETS", 0x5401)
    public static let tcsets = SeccompIoctl("TCSETS", 0x5402)
    public static let tcsetsw = SeccompIoctl("TCSETSW", 0x5403)
    public static let tcsetsf = SeccompIoctl("TCSETSF", 0x5404)
    public static let fionbio = SeccompIoctl("FIONBIO", 0x5421)

    /// What building a VM asks of KVM, the TAP and the files.
    public static let build: [SeccompIoctl] = [
        .kvmGetAPIVersion, .kvmCreateVM, .kvmCheckExtension, .kvmGetVCPUMmapSize, .kvmGetSupportedCPUID,
        .kvmGetMSRIndexList,
        .kvmCreateVCPU, .kvmSetUserMemoryRegion, .kvmSetTSSAddr, .kvmSetIdentityMapAddr, .kvmCreateIRQChip,
        .kvmCreatePIT2, .kvmIRQFD, .kvmIOEventFD, .kvmIRQLine,
        .kvmSetRegs, .kvmGetSregs, .kvmSetSregs, .kvmGetFPU, .kvmSetFPU, .kvmSetCPUID2, .kvmGetMSRs, .kvmSetMSRs,
        .kvmGetLAPIC, .kvmSetLAPIC,
        .tunSetIFF, .tunGetIFF, .tunGetFeatures, .tunSetOffload, .tunSetVnetHdrSz, .siocGIFFlags, .siocGIFIndex,
        .blkGetSize64, .tcgets, .fionbio,
    ]

    /// Every request swiftvm makes, by name, for filter files.
    public static let known: [SeccompIoctl] = {
        var seen = Set<String>()
        return (build + [.kvmRun, .kvmGetRegs, .kvmGetMPState, .kvmTranslate, .tcsets, .tcsetsw, .tcsetsf])
            .filter { seen.insert($0.name).inserted }
    }()

    /// The request called `name` ("KVM_RUN"), if swiftvm knows it.
    public static func named(_ name: String) -> SeccompIoctl? {
        known.first { $0.name == name.uppercased() }
    }
}
