import Logging
import RelayConfig
import RelayTLS

/// The relay's TLS contexts made from `tls.*`: its listeners' (when `tls.cert` is set) and the
/// one it dials `tls://` mesh peers with (it presents `tls.cert`/`tls.key` as its client
/// certificate and trusts `tls.client_ca`, the same CA its listeners trust for clients). Set once
/// at start; each context reloads its files in place.
struct RelayTLSContexts: Sendable {
    let server: ServerTLS?
    let client: ClientTLS

    init(_ settings: RelayConfiguration.TLS) throws {
        server = try Self.serverFiles(settings).map { try ServerTLS(files: $0) }
        client = try ClientTLS(files: Self.clientFiles(settings))
    }

    static func serverFiles(_ settings: RelayConfiguration.TLS) -> ServerTLSFiles? {
        guard let cert = settings.cert, let key = settings.key else { return nil }
        return ServerTLSFiles(
            certificateChain: cert, privateKey: key, clientCA: settings.clientCA,
            requireClientCertificate: settings.requireClientCert)
    }

    static func clientFiles(_ settings: RelayConfiguration.TLS) -> ClientTLSFiles {
        ClientTLSFiles(trustRoots: settings.clientCA, certificateChain: settings.cert, privateKey: settings.key)
    }

    /// Reads the files of `settings` again for new connections. A file that cannot be used is
    /// refused with an error line and the context in use stays. Returns the keys that need a
    /// restart (TLS turned on or off).
    func reload(_ settings: RelayConfiguration.TLS, logger: Logger) -> [String] {
        var needsRestart: [String] = []
        if let server {
            if let files = Self.serverFiles(settings) {
                do {
                    try server.reload(files)
                    logger.info("TLS certificate loaded", metadata: ["cert": "\(files.certificateChain)"])
                } catch {
                    logger.error(
                        "TLS certificate reload refused: the one in use stays",
                        metadata: ["cert": "\(files.certificateChain)", "reason": "\(error)"])
                }
            } else {
                needsRestart.append("tls.cert")
            }
        } else if settings.cert != nil {
            needsRestart.append("tls.cert")
        }
        do {
            try client.reload(Self.clientFiles(settings))
        } catch {
            logger.error("TLS client context reload refused: the one in use stays", metadata: ["reason": "\(error)"])
        }
        return needsRestart
    }
}

extension RelayServer {
    /// Loads the TLS files of `settings` as the relay does at start (`check-config`): nil when
    /// they load, else why not, in one line.
    public static func tlsFilesProblem(_ settings: RelayConfiguration.TLS) -> String? {
        do {
            _ = try RelayTLSContexts(settings)
            return nil
        } catch {
            return "\(error)"
        }
    }
}
