import PTPProtocol
import X509

/// What a client certificate says about the node presenting it (PROFILE.md section 3): a
/// subjectAltName URI `urn:uuid:GUID` names the node id the certificate proves. Pure: parses
/// DER bytes with swift-certificates, no connection involved.
public enum NodeCertificate {
    /// What the certificate's subjectAltName holds.
    public enum Claim: Sendable, Equatable {
        /// Exactly one node id (the same id written twice counts once).
        case proves(GUID)
        /// No `urn:uuid:` URI (a relay's or a person's certificate): nothing proven.
        case none
        /// A `urn:uuid:` URI whose GUID does not parse, or several different ids: nothing proven.
        case malformed(String)
    }

    static let urnPrefix = "urn:uuid:"

    /// The node id the certificate in `der` proves. Throws when the bytes are no X.509 certificate
    /// or its subjectAltName extension does not decode.
    public static func claim(derEncoded der: [UInt8]) throws -> Claim {
        let certificate = try Certificate(derEncoded: der)
        guard let names = try certificate.extensions.subjectAlternativeNames else { return .none }
        var found: GUID?
        for name in names {
            guard case .uniformResourceIdentifier(let uri) = name,
                uri.count >= urnPrefix.count, uri.prefix(urnPrefix.count).lowercased() == urnPrefix
            else { continue }
            guard let id = GUID(String(uri.dropFirst(urnPrefix.count))), !id.isZero else {
                return .malformed("subjectAltName URI \(uri) is not urn:uuid: and a GUID")
            }
            if let earlier = found, earlier != id {
                return .malformed("subjectAltName names two node ids, \(earlier) and \(id)")
            }
            found = id
        }
        return found.map(Claim.proves) ?? .none
    }
}
