import Crypto
import Foundation
import PTPProtocol
import RelayTLS
import X509
import XCTest

/// The node id a certificate's subjectAltName proves, read from DER made here with
/// swift-certificates (the handshake tests use real certificates made by `openssl`).
final class NodeCertificateTests: XCTestCase {
    private let id = "0b370041-cd1e-40ac-ac59-0136bba850fe"
    private let other = "5f715c17-4a41-482a-ab1f-45fa2cdd702b"

    private func certificate(_ names: [GeneralName]?) throws -> [UInt8] {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let subject = try DistinguishedName { CommonName("node") }
        let extensions = try Certificate.Extensions {
            if let names { SubjectAlternativeNames(names) }
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: Date(), notValidAfter: Date().addingTimeInterval(3600),
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions, issuerPrivateKey: key)
        return try certificate.serializeAsPEM().derBytes
    }

    func testURNAmongSeveralNamesProvesTheID() throws {
        let der = try certificate([
            .dnsName("alice.example"), .rfc822Name("alice@example.org"),
            .uniformResourceIdentifier("https://example.org/alice"),
            .uniformResourceIdentifier("urn:uuid:\(id)"),
        ])
        XCTAssertEqual(try NodeCertificate.claim(derEncoded: der), .proves(GUID(id)!))
    }

    func testUpperCaseURNProvesTheID() throws {
        let der = try certificate([.uniformResourceIdentifier("URN:UUID:\(id.uppercased())")])
        XCTAssertEqual(try NodeCertificate.claim(derEncoded: der), .proves(GUID(id)!))
    }

    func testSameIDTwiceProvesIt() throws {
        let der = try certificate([.uniformResourceIdentifier("urn:uuid:\(id)"), .uniformResourceIdentifier("urn:uuid:\(id)")])
        XCTAssertEqual(try NodeCertificate.claim(derEncoded: der), .proves(GUID(id)!))
    }

    func testWithoutURNProvesNothing() throws {
        XCTAssertEqual(try NodeCertificate.claim(derEncoded: certificate([.dnsName("relay.example")])), .none)
        XCTAssertEqual(try NodeCertificate.claim(derEncoded: certificate([.uniformResourceIdentifier("https://example.org")])), .none)
        XCTAssertEqual(try NodeCertificate.claim(derEncoded: certificate(nil)), .none, "no subjectAltName at all")
    }

    func testMalformedURNProvesNothing() throws {
        for uri in ["urn:uuid:not-a-guid", "urn:uuid:\(id)x", "urn:uuid:", "urn:uuid:00000000-0000-0000-0000-000000000000"] {
            guard case .malformed = try NodeCertificate.claim(derEncoded: certificate([.uniformResourceIdentifier(uri)])) else {
                XCTFail("\(uri) must be refused as malformed")
                continue
            }
        }
    }

    func testTwoDifferentIDsProveNothing() throws {
        let der = try certificate([.uniformResourceIdentifier("urn:uuid:\(id)"), .uniformResourceIdentifier("urn:uuid:\(other)")])
        guard case .malformed = try NodeCertificate.claim(derEncoded: der) else {
            return XCTFail("a certificate naming two ids proves neither")
        }
    }

    func testGarbageIsNoCertificate() {
        XCTAssertThrowsError(try NodeCertificate.claim(derEncoded: [0x30, 0x03, 0x02, 0x01]))
    }
}
