import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A small client for a Firecracker-style API socket (SwiftNIO's HTTP/1.1
/// codec over a Unix socket, one keep-alive connection). `swiftvm selftest`
/// uses it to boot the test guest through the API, and so do the tests.
public final class APIClient: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]

        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    private let group: MultiThreadedEventLoopGroup
    private let channel: any Channel
    private let collector: ResponseCollector

    /// Connects to the API socket at `path`.
    public init(socketPath path: String) throws(Failure) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let collector = ResponseCollector()
        let bootstrap = ClientBootstrap(group: group).channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(collector)
            }
        }
        do { channel = try bootstrap.connect(unixDomainSocketPath: path).wait() } catch {
            try? group.syncShutdownGracefully()
            throw Failure(description: "cannot connect to \(path): \(error)")
        }
        self.group = group
        self.collector = collector
    }

    deinit { try? group.syncShutdownGracefully() }

    /// Sends one request and waits for its response.
    public func request(_ method: String, _ path: String, body: String? = nil) throws(Failure) -> Response {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "localhost")
        if let body {
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: String(body.utf8.count))
        }
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path, headers: headers)
        let promise = channel.eventLoop.makePromise(of: Response.self)
        collector.expect(promise)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body {
            var buffer = channel.allocator.buffer(capacity: body.utf8.count)
            buffer.writeString(body)
            channel.write(HTTPClientRequestPart.body(.byteBuffer(buffer)), promise: nil)
        }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        do { return try promise.futureResult.wait() } catch {
            throw Failure(description: "\(method) \(path): \(error)")
        }
    }

    public func close() { try? channel.close().wait() }
}

/// Puts the parts of each response together and completes the waiting promise.
private final class ResponseCollector: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPClientResponsePart

    private struct State {
        var promise: EventLoopPromise<APIClient.Response>?
        var response = APIClient.Response(status: 0, headers: [], body: [])
    }
    private let state = NIOLockedValueBox(State())

    func expect(_ promise: EventLoopPromise<APIClient.Response>) {
        state.withLockedValue { $0.promise = promise }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            state.withLockedValue {
                $0.response = APIClient.Response(
                    status: Int(head.status.code), headers: head.headers.map { ($0.name, $0.value) }, body: [])
            }
        case .body(var buffer):
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            state.withLockedValue { $0.response.body += bytes }
        case .end:
            let (promise, response) = state.withLockedValue { state in
                defer { state.promise = nil }
                return (state.promise, state.response)
            }
            promise?.succeed(response)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        let promise = state.withLockedValue { state in
            defer { state.promise = nil }
            return state.promise
        }
        promise?.fail(APIClient.Failure(description: "the server closed the connection"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let promise = state.withLockedValue { state in
            defer { state.promise = nil }
            return state.promise
        }
        promise?.fail(error)
        context.close(promise: nil)
    }
}
