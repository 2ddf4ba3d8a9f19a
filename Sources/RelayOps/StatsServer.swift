import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import RelayCore

/// The stats endpoint: HTTP/1.1 on its own event loop, so that it answers while the relay's
/// loops are saturated. `GET /` (the live dashboard, also `/index.html`), `/stats` (JSON),
/// `/routes` (JSON), `/metrics` (Prometheus), `/healthz`, `/readyz`; anything else is 404.
public final class StatsServer: Sendable {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let collector: StatsCollector
    private let readiness: Readiness
    private let logger: Logger
    private let channel = NIOLockedValueBox<Channel?>(nil)

    public init(collector: StatsCollector, readiness: Readiness, logger: Logger) {
        self.collector = collector
        self.readiness = readiness
        self.logger = logger
    }

    private var bootstrap: ServerBootstrap {
        let collector = self.collector
        let readiness = self.readiness
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(StatsHTTPHandler(collector: collector, readiness: readiness))
                }
            }
    }

    /// Listens on `host:port` (an IP literal bound without a resolver lookup: `ListenAddress`);
    /// returns the bound address.
    @discardableResult
    public func start(host: String, port: Int) async throws -> SocketAddress? {
        let bound = try await bootstrap.bind(to: ListenAddress.socketAddress(host: host, port: port)).get()
        channel.withLockedValue { $0 = bound }
        logger.info("stats endpoint listening", metadata: ["address": "\(bound.localAddress?.hostPort ?? "?")"])
        return bound.localAddress
    }

    /// Serves on a listening socket passed by systemd.
    public func start(descriptor: Int32) async throws {
        let bound = try await bootstrap.withBoundSocket(descriptor).get()
        channel.withLockedValue { $0 = bound }
        logger.info("stats endpoint on socket from systemd", metadata: ["address": "\(bound.localAddress?.hostPort ?? "?")"])
    }

    public func shutdown() async {
        let bound = channel.withLockedValue { $0 }
        try? await bound?.close()
        try? await group.shutdownGracefully()
    }
}

final class StatsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let collector: StatsCollector
    private let readiness: Readiness
    private var request: HTTPRequestHead?

    init(collector: StatsCollector, readiness: Readiness) {
        self.collector = collector
        self.readiness = readiness
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard head.method == .GET || head.method == .HEAD else {
            send(.methodNotAllowed, "text/plain", Array("only GET\n".utf8), head: head, context: context)
            return
        }
        switch path {
        case "/", "/index.html":
            sendDashboard(head: head, context: context)
        case "/healthz":
            send(.ok, "text/plain", Array("ok\n".utf8), head: head, context: context)
        case "/readyz":
            let ready = readiness.isReady
            send(ready ? .ok : .serviceUnavailable, "text/plain", Array("\(readiness.current.rawValue)\n".utf8), head: head, context: context)
        case "/stats":
            produce(head: head, context: context, contentType: "application/json") { try await $0.statsJSON() }
        case "/routes":
            let query: RouteQuery
            do {
                query = try RouteQuery(uri: head.uri)
            } catch {
                send(.badRequest, "text/plain", Array("\(error.reason)\n".utf8), head: head, context: context)
                return
            }
            produce(head: head, context: context, contentType: "application/json") { try $0.routesJSON(query) }
        case "/metrics":
            produce(head: head, context: context, contentType: "text/plain; version=0.0.4") { try await $0.prometheusText() }
        default:
            send(.notFound, "text/plain", Array("not found\n".utf8), head: head, context: context)
        }
    }

    private func produce(
        head: HTTPRequestHead, context: ChannelHandlerContext, contentType: String,
        _ body: @escaping @Sendable (StatsCollector) async throws -> [UInt8]
    ) {
        let collector = self.collector
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.makeFutureWithTask { try await body(collector) }.whenComplete { result in
            let (handler, context) = bound.value
            switch result {
            case .success(let bytes):
                handler.send(.ok, contentType, bytes, head: head, context: context)
            case .failure(let error):
                handler.send(.internalServerError, "text/plain", Array("\(error)\n".utf8), head: head, context: context)
            }
        }
    }

    /// The dashboard changes only with the binary: browsers keep it and revalidate it (`no-cache`
    /// with an ETag, 304 when unchanged). Its CSP allows nothing but its own script, style and
    /// requests to this endpoint.
    private func sendDashboard(head: HTTPRequestHead, context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Cache-Control", value: "no-cache")
        headers.add(name: "ETag", value: DashboardPage.entityTag)
        headers.add(name: "Content-Security-Policy", value: DashboardPage.contentSecurityPolicy)
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        headers.add(name: "Referrer-Policy", value: "no-referrer")
        let cached = head.headers["If-None-Match"].contains { value in
            value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces) == DashboardPage.entityTag }
        }
        if cached {
            send(.notModified, nil, [], head: head, context: context, extra: headers)
        } else {
            send(.ok, "text/html; charset=utf-8", DashboardPage.bytes, head: head, context: context, extra: headers)
        }
    }

    private func send(
        _ status: HTTPResponseStatus, _ contentType: String?, _ body: [UInt8], head: HTTPRequestHead, context: ChannelHandlerContext,
        extra: HTTPHeaders? = nil
    ) {
        var headers = extra ?? HTTPHeaders()
        if let contentType { headers.add(name: "Content-Type", value: contentType) }
        if status != .notModified { headers.add(name: "Content-Length", value: "\(body.count)") }
        if extra == nil { headers.add(name: "Cache-Control", value: "no-store") }
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD && status != .notModified {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let promise: EventLoopPromise<Void>? = keepAlive ? nil : context.eventLoop.makePromise()
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
        if let promise {
            let channel = context.channel
            promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}
