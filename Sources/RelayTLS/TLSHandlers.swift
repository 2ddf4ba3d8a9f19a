import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import NIOTLS

/// What the relay wants to hear of a connection's TLS handshake. Called on the channel's loop.
public struct TLSHandshakeObserver: Sendable {
    /// The handshake failed (the connection is being closed).
    public var failed: @Sendable (any Error) -> Void
    /// A verified client certificate carries a `urn:uuid:` SAN that proves nothing (malformed,
    /// or two ids): the connection stays, unproven.
    public var unprovenClaim: @Sendable (String) -> Void
    /// The handshake completed with this protocol version.
    public var completed: @Sendable (TLSProtocolVersion?) -> Void

    public init(
        failed: @escaping @Sendable (any Error) -> Void,
        unprovenClaim: @escaping @Sendable (String) -> Void = { _ in },
        completed: @escaping @Sendable (TLSProtocolVersion?) -> Void = { _ in }
    ) {
        self.failed = failed
        self.unprovenClaim = unprovenClaim
        self.completed = completed
    }
}

/// The server side of the relay's TLS listeners: the context made from `tls.*` files, swapped
/// whole by `reload` for connections accepted afterwards (open ones keep the context they
/// started with; NIOSSL holds it per connection).
public final class ServerTLS: Sendable {
    /// Guarded by the lock: read once per accepted connection, written by a reload.
    private let current: NIOLockedValueBox<(files: ServerTLSFiles, context: NIOSSLContext)>

    /// Reads the files; throws `TLSSetupError` when one is missing or broken.
    public init(files: ServerTLSFiles) throws {
        current = NIOLockedValueBox((files, try files.makeContext()))
    }

    /// Reads the files again (paths unchanged or not: a renewed certificate lands at the same
    /// path). On any error the old context stays and the error is thrown for the log.
    public func reload(_ files: ServerTLSFiles) throws {
        let context = try files.makeContext()
        current.withLockedValue { $0 = (files, context) }
    }

    public var files: ServerTLSFiles { current.withLockedValue { $0.files } }

    /// Puts TLS in front of whatever the pipeline gets next (call on the channel's loop, before
    /// the plaintext handlers are added). A verified client certificate that proves a node id
    /// fires `ProvenNodeIdentity` down the pipeline when the handshake completes.
    public func addHandlers(to channel: Channel, observer: TLSHandshakeObserver) throws {
        let (files, context) = current.withLockedValue { $0 }
        try channel.pipeline.syncOperations.addHandlers([
            NIOSSLServerHandler(context: context),
            // Only a certificate verified against `tls.client_ca` proves anything (without it
            // none is asked for; this keeps it so should that ever change).
            HandshakeWatcher(observer: observer, provesIdentity: files.clientCA != nil),
        ])
    }
}

/// The dialing side: a relay dialing a `tls://` mesh peer, or the `ptpchat` client.
public final class ClientTLS: Sendable {
    private let current: NIOLockedValueBox<(files: ClientTLSFiles, context: NIOSSLContext)>

    public init(files: ClientTLSFiles) throws {
        current = NIOLockedValueBox((files, try files.makeContext()))
    }

    /// As `ServerTLS.reload`: the old context stays on any error.
    public func reload(_ files: ClientTLSFiles) throws {
        let context = try files.makeContext()
        current.withLockedValue { $0 = (files, context) }
    }

    public var files: ClientTLSFiles { current.withLockedValue { $0.files } }

    /// Puts TLS in front of the pipeline of a connection to `host` (a DNS name is sent as SNI;
    /// either way the peer's certificate must name the host: DNS or IP subjectAltName).
    public func addHandlers(to channel: Channel, host: String, observer: TLSHandshakeObserver) throws {
        let context = current.withLockedValue { $0.context }
        let isIPAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        try channel.pipeline.syncOperations.addHandlers([
            try NIOSSLClientHandler(context: context, serverHostname: isIPAddress ? nil : host),
            HandshakeWatcher(observer: observer, provesIdentity: false),
        ])
    }
}

/// Sits right behind the NIOSSL handler until the handshake ends: reports a failed handshake
/// (and closes only that connection), turns a verified client certificate's node id into
/// `ProvenNodeIdentity`, then leaves the pipeline so data passes one handler fewer.
/// A connection the relay itself closes during the handshake (its handshake timeout, a shutdown)
/// is not a failed handshake: NIOSSL reports one when the channel goes, so the watcher notes the
/// close on its way out.
final class HandshakeWatcher: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer

    private let observer: TLSHandshakeObserver
    private let provesIdentity: Bool
    /// This connection's loop only.
    private var isFinished = false

    init(observer: TLSHandshakeObserver, provesIdentity: Bool) {
        self.observer = observer
        self.provesIdentity = provesIdentity
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard !isFinished, case .handshakeCompleted? = event as? TLSUserEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        isFinished = true
        let tls = try? context.pipeline.syncOperations.handler(type: NIOSSLHandler.self)
        observer.completed(tls?.tlsVersion.flatMap(TLSProtocolVersion.init))
        if provesIdentity, let proven = provenIdentity(tls) {
            context.fireUserInboundEventTriggered(proven)
        }
        context.fireUserInboundEventTriggered(event)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        isFinished = true
        context.close(mode: mode, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !isFinished else {
            context.fireErrorCaught(error)
            return
        }
        isFinished = true
        observer.failed(error)
        context.close(promise: nil)
    }

    /// The node id the peer's verified certificate proves (NIOSSL keeps the leaf only once its
    /// chain verified against the client CA).
    private func provenIdentity(_ tls: NIOSSLHandler?) -> ProvenNodeIdentity? {
        guard let certificate = tls?.peerCertificate else { return nil }
        do {
            switch try NodeCertificate.claim(derEncoded: certificate.toDERBytes()) {
            case .proves(let id):
                return ProvenNodeIdentity(nodeID: id)
            case .none:
                return nil
            case .malformed(let why):
                observer.unprovenClaim(why)
                return nil
            }
        } catch {
            observer.unprovenClaim("client certificate does not decode: \(error)")
            return nil
        }
    }
}
