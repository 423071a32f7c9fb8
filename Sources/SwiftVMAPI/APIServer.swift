import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix
import SwiftVM

/// Firecracker's API on a Unix socket: HTTP/1.1 with keep-alive (SwiftNIO's
/// parser and pipeline), one thread of its own, requests answered one at a
/// time through `FirecrackerController`. It never touches devices itself.
final class APIServer: Sendable {
    let path: String
    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel

    /// Binds `path` and starts serving. A socket file already there is an
    /// error: it may belong to a running VMM.
    init(path: String, controller: FirecrackerController, maxPayload: Int) throws(VMMError) {
        self.path = path
        var info = stat()
        if lstat(path, &info) == 0 {
            throw VMMError(.usage, "the API socket \(path) already exists; another VMM may be using it. "
                + "Remove it (rm \(path)) if none is, or choose another --api-sock")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        RequestHandler(controller: controller, maxPayload: maxPayload))
                }
            }
        do {
            channel = try bootstrap.bind(unixDomainSocketPath: path).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw VMMError(.usage, "cannot listen on the API socket \(path): \(error)")
        }
        self.group = group
    }

    /// Loads the API thread's seccomp filter on SwiftNIO's event-loop thread
    /// itself, and returns once it is loaded (docs/security.md).
    func installSeccomp(_ filters: SeccompFilters) throws {
        try channel.eventLoop.submit { try filters.install(.api) }.wait()
    }

    /// Stops serving and removes the socket file.
    func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
        unlink(path)
    }
}

/// Collects one request (head, body up to the payload limit, end) and answers it.
private final class RequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let controller: FirecrackerController
    private let maxPayload: Int
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    private var tooLarge = false

    init(controller: FirecrackerController, maxPayload: Int) {
        self.controller = controller
        self.maxPayload = maxPayload
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body = []
            tooLarge = false
        case .body(var buffer):
            guard !tooLarge else { return }
            if body.count + buffer.readableBytes > maxPayload {
                tooLarge = true
                body = []
            } else if let bytes = buffer.readBytes(length: buffer.readableBytes) {
                body += bytes
            }
        case .end:
            guard let head else { return }
            self.head = nil
            let reply: FirecrackerController.Reply
            if tooLarge {
                reply = .badRequest("Request payload is larger than the limit of \(maxPayload) bytes allowed by "
                    + "the server (--http-api-max-payload-size).")
            } else {
                let path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
                reply = controller.handle(method: head.method.rawValue, path: path, body: body)
            }
            respond(context: context, head: head, reply: reply)
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead, reply: FirecrackerController.Reply) {
        let keepAlive = head.isKeepAlive
        var headers = HTTPHeaders()
        headers.add(name: "Server", value: "Firecracker API")
        if let body = reply.body {
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(body.count))
        }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let status = HTTPResponseStatus(statusCode: reply.status)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
                      promise: nil)
        if let body = reply.body {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
