import Foundation
import NIOSSL

/// The TLS protocol versions the relay speaks (PROFILE.md section 1: TLS 1.2 and 1.3).
public enum TLSProtocolVersion: Sendable {
    case tls12
    case tls13

    init?(_ version: TLSVersion) {
        switch version {
        case .tlsv12: self = .tls12
        case .tlsv13: self = .tls13
        default: return nil
        }
    }

    var nio: TLSVersion {
        switch self {
        case .tls12: return .tlsv12
        case .tls13: return .tlsv13
        }
    }
}

/// A listener's PEM files (`tls.cert`, `tls.key`, `tls.client_ca`) and whether a client
/// certificate is required (`tls.require_client_cert`).
public struct ServerTLSFiles: Sendable, Equatable {
    public var certificateChain: String
    public var privateKey: String
    /// Clients' certificates are asked for and verified against these roots; nil: none asked for.
    public var clientCA: String?
    /// With `clientCA`: a handshake without a client certificate fails. Without it a certificate
    /// is optional, but one that is presented must verify.
    public var requireClientCertificate: Bool

    public init(certificateChain: String, privateKey: String, clientCA: String? = nil, requireClientCertificate: Bool = false) {
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.clientCA = clientCA
        self.requireClientCertificate = requireClientCertificate
    }

    /// Reads the files now: a missing or broken file throws `TLSSetupError` naming it.
    func makeContext() throws -> NIOSSLContext {
        let chain = try TLSSetupError.reading(certificateChain) {
            try NIOSSLCertificate.fromPEMFile(certificateChain).map(NIOSSLCertificateSource.certificate)
        }
        guard !chain.isEmpty else { throw TLSSetupError(file: certificateChain, reason: "no certificate in the file") }
        let key = try TLSSetupError.reading(privateKey) { try NIOSSLPrivateKey(file: privateKey, format: .pem) }
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.maximumTLSVersion = .tlsv13
        if let clientCA {
            let roots = try TLSSetupError.reading(clientCA) { try NIOSSLCertificate.fromPEMFile(clientCA) }
            guard !roots.isEmpty else { throw TLSSetupError(file: clientCA, reason: "no certificate in the file") }
            configuration.trustRoots = .certificates(roots)
            configuration.certificateVerification = requireClientCertificate ? .noHostnameVerification : .optionalVerification
        } else {
            configuration.certificateVerification = .none
        }
        // A key that does not belong to the certificate fails here, not at the first handshake.
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSSetupError(file: privateKey, reason: "not the key of \(certificateChain), or unusable (\(error))")
        }
    }
}

/// What a dialing side trusts and presents: trust roots (nil: the system's), and optionally its
/// own certificate and key (a mesh relay's `tls.cert`/`tls.key`, a node's certificate).
public struct ClientTLSFiles: Sendable, Equatable {
    public var trustRoots: String?
    public var certificateChain: String?
    public var privateKey: String?
    public var minimumVersion: TLSProtocolVersion
    public var maximumVersion: TLSProtocolVersion

    public init(
        trustRoots: String? = nil, certificateChain: String? = nil, privateKey: String? = nil,
        minimumVersion: TLSProtocolVersion = .tls12, maximumVersion: TLSProtocolVersion = .tls13
    ) {
        self.trustRoots = trustRoots
        self.certificateChain = certificateChain
        self.privateKey = privateKey
        self.minimumVersion = minimumVersion
        self.maximumVersion = maximumVersion
    }

    func makeContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = minimumVersion.nio
        configuration.maximumTLSVersion = maximumVersion.nio
        // The peer's name is checked against the dialed host (a DNS name or an IP SAN).
        configuration.certificateVerification = .fullVerification
        if let trustRoots {
            let roots = try TLSSetupError.reading(trustRoots) { try NIOSSLCertificate.fromPEMFile(trustRoots) }
            guard !roots.isEmpty else { throw TLSSetupError(file: trustRoots, reason: "no certificate in the file") }
            configuration.trustRoots = .certificates(roots)
        }
        switch (certificateChain, privateKey) {
        case (let chainFile?, let keyFile?):
            let chain = try TLSSetupError.reading(chainFile) { try NIOSSLCertificate.fromPEMFile(chainFile) }
            configuration.certificateChain = chain.map(NIOSSLCertificateSource.certificate)
            let key = try TLSSetupError.reading(keyFile) { try NIOSSLPrivateKey(file: keyFile, format: .pem) }
            configuration.privateKey = .privateKey(key)
        case (nil, nil):
            break
        case (let chainFile?, nil):
            throw TLSSetupError(file: chainFile, reason: "a client certificate needs its key")
        case (nil, let keyFile?):
            throw TLSSetupError(file: keyFile, reason: "a client key needs its certificate")
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSSetupError(file: privateKey ?? trustRoots ?? "TLS client", reason: "cannot be used (\(error))")
        }
    }
}

/// A certificate, key or CA file that cannot be used, and why.
public struct TLSSetupError: Error, CustomStringConvertible {
    public var file: String
    public var reason: String
    public var description: String { "\(file): \(reason)" }

    static func reading<T>(_ file: String, _ body: () throws -> T) throws -> T {
        guard FileManager.default.isReadableFile(atPath: file) else {
            let exists = FileManager.default.fileExists(atPath: file)
            throw TLSSetupError(file: file, reason: exists ? "cannot be read (permissions)" : "no such file")
        }
        do {
            return try body()
        } catch let error as TLSSetupError {
            throw error
        } catch {
            throw TLSSetupError(file: file, reason: "not a PEM file of the expected kind (\(error))")
        }
    }
}
