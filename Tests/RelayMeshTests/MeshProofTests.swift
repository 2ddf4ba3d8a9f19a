import PTPProtocol
import XCTest

@testable import RelayMesh

final class MeshProofTests: XCTestCase {
    private let keyText = "correct horse battery staple"
    private let a = GUID("0b370041-cd1e-40ac-ac59-0136bba850fe")!
    private let b = GUID("5f715c17-4a41-482a-ab1f-45fa2cdd702b")!
    private let na = "00112233445566778899aabbccddeeff"
    private let nb = "ffeeddccbbaa99887766554433221100"

    // Known vectors, computed independently of this code with Python's standard library:
    //   python3 -c 'import hmac,hashlib; print(hmac.new(KEY.encode("utf-8"),
    //       ("ptpchat-mesh-v1:" + NONCE + ":" + NODE).encode("utf-8"), hashlib.sha256).hexdigest())'
    /// KEY "correct horse battery staple", NONCE na, NODE a.
    private let proofNaA = "412b9c17b7cd63777d5e43c04cbed2add75de7d03338b436acd938e9aa79ebc9"
    /// KEY "correct horse battery staple", NONCE na, NODE b.
    private let proofNaB = "ea7fb0b1cc729b0fb2044c6c70f28609770fbe99da1f3ceaf286fd39643c5e20"
    /// KEY "correct horse battery staple", NONCE nb, NODE b.
    private let proofNbB = "4f93410cbcbe3016c5be3fb95ab1401e9549c28328ef5d6d0d3599c60db0fde5"
    /// KEY "mesh-key-\u{e9}t\u{e9}-0123" (19 UTF-8 bytes), NONCE na, NODE a.
    private let proofUTF8Key = "296b51c946adfd1a6c8406a6ed67e205db30ee7384669229382489ff76ac6767"

    private func key(_ text: String? = nil) -> MeshKey {
        do {
            return try MeshKey(text ?? keyText)
        } catch {
            XCTFail("key refused: \(error)")
            fatalError()
        }
    }

    // MARK: Proof

    func testProofMatchesKnownVectors() {
        XCTAssertEqual(key().proof(nonce: na, prover: a), proofNaA)
        XCTAssertEqual(key().proof(nonce: na, prover: b), proofNaB)
        XCTAssertEqual(key().proof(nonce: nb, prover: b), proofNbB)
        XCTAssertEqual(key("mesh-key-\u{e9}t\u{e9}-0123").proof(nonce: na, prover: a), proofUTF8Key)
    }

    func testVerifyAcceptsTheKnownProof() {
        XCTAssertTrue(key().verify(proof: proofNaA, nonce: na, prover: a))
        XCTAssertTrue(key().verify(proof: proofNbB, nonce: nb, prover: b))
    }

    /// Lenient in what it accepts: the same 64 digits in upper case are the same code.
    func testVerifyAcceptsUppercaseHex() {
        XCTAssertTrue(key().verify(proof: proofNaA.uppercased(), nonce: na, prover: a))
    }

    func testWrongProofRejected() {
        var flipped = Array(proofNaA.utf8)
        flipped[63] = flipped[63] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        XCTAssertFalse(key().verify(proof: String(decoding: flipped, as: UTF8.self), nonce: na, prover: a))
        XCTAssertFalse(key().verify(proof: proofNaA, nonce: nb, prover: a), "other nonce")
        XCTAssertFalse(key("another mesh key, same length").verify(proof: proofNaA, nonce: na, prover: a), "other key")
    }

    func testWrongNodeIDRejected() {
        // b's valid proof of na does not prove a, and the other way round.
        XCTAssertFalse(key().verify(proof: proofNaB, nonce: na, prover: a))
        XCTAssertFalse(key().verify(proof: proofNaA, nonce: na, prover: b))
    }

    func testMalformedProofRejected() {
        for proof in ["", String(proofNaA.dropLast()), proofNaA + "0", String(proofNaA.dropLast()) + "g",
                      " " + String(proofNaA.dropFirst()), String(repeating: "\u{e9}", count: 32)] {
            XCTAssertFalse(key().verify(proof: proof, nonce: na, prover: a), proof)
        }
    }

    // MARK: Key

    func testTooShortKeyRefused() {
        for text in ["", "short", "0123456789abcde"] {  // 0, 5 and 15 bytes
            XCTAssertThrowsError(try MeshKey(text)) { error in
                let description = "\(error)"
                XCTAssertFalse(description.contains("\n"), "one line")
                XCTAssertTrue(description.contains("mesh.key"), description)
                XCTAssertTrue(description.contains("16"), description)
                if !text.isEmpty { XCTAssertFalse(description.contains(text), "the key is never printed") }
            }
        }
        XCTAssertEqual(
            "\(MeshKeyError(byteCount: 15))", "mesh.key is 15 bytes long; it must be at least 16 bytes (UTF-8)")
        XCTAssertNoThrow(try MeshKey("0123456789abcdef"))  // 16 bytes
        // Bytes, not characters: eight two-byte characters are 16 bytes, seven are 14.
        XCTAssertNoThrow(try MeshKey(String(repeating: "\u{e9}", count: 8)))
        XCTAssertThrowsError(try MeshKey(String(repeating: "\u{e9}", count: 7)))
    }

    func testKeyDescriptionIsRedacted() {
        XCTAssertFalse("\(key())".contains("horse"))
    }

    // MARK: Nonce

    func testNonceIs32LowercaseHexAndNew() {
        var seen = Set<String>()
        for _ in 0..<100 {
            let nonce = MeshProof.makeNonce()
            XCTAssertEqual(nonce.utf8.count, 32)
            XCTAssertTrue(nonce.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }, nonce)
            XCTAssertTrue(MeshProof.isWellFormedNonce(nonce))
            seen.insert(nonce)
        }
        XCTAssertEqual(seen.count, 100)
        XCTAssertNotEqual(MeshHandshake(accepting: key(), ownID: a).nonce, MeshHandshake(accepting: key(), ownID: a).nonce)
    }

    func testNonceFromGenerator() {
        var generator = CountingGenerator(values: [0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210])
        XCTAssertEqual(MeshProof.makeNonce(using: &generator), "0123456789abcdeffedcba9876543210")
    }

    func testNonceShape() {
        XCTAssertTrue(MeshProof.isWellFormedNonce(na))
        XCTAssertTrue(MeshProof.isWellFormedNonce(na.uppercased()))
        XCTAssertFalse(MeshProof.isWellFormedNonce(String(na.dropLast())))
        XCTAssertFalse(MeshProof.isWellFormedNonce(na + "0"))
        XCTAssertFalse(MeshProof.isWellFormedNonce(String(na.dropLast()) + "x"))
    }

    // MARK: Handshake

    private func hello(_ id: GUID, server: Bool = true, nonce: String? = nil, proof: String? = nil) -> MeshHelloReceived {
        MeshHelloReceived(nodeID: id, declaresServer: server, nonce: nonce, proof: proof)
    }

    /// The whole exchange between an accepting relay a and a dialing relay b.
    func testHandshakeBothSidesProve() {
        var acceptor = MeshHandshake(accepting: key(), ownID: a, nonce: na)
        var dialer = MeshHandshake(dialing: key(), ownID: b, nonce: nb)
        XCTAssertEqual(acceptor.role, .accepting)
        XCTAssertEqual(dialer.role, .dialing)
        XCTAssertNil(dialer.initialAttributes)

        // 1. a → b: HELLO with Na.
        guard let first = acceptor.initialAttributes else { return XCTFail("no first HELLO") }
        XCTAssertEqual(first, MeshHelloAttributes(nonce: na, proof: nil))
        // 2. b → a: HELLO with Nb and proof(Na) for b.
        let second = dialer.receive(hello(a, nonce: first.nonce, proof: first.proof))
        XCTAssertEqual(second, .send(MeshHelloAttributes(nonce: nb, proof: proofNaB)))
        XCTAssertFalse(dialer.isFinished)
        guard case .send(let secondAttributes) = second else { return }
        // 3. a checks it, binds b as a peer and answers with proof(Nb) for a.
        let third = acceptor.receive(hello(b, nonce: secondAttributes.nonce, proof: secondAttributes.proof))
        let expectedReply = MeshHelloAttributes(nonce: nil, proof: key().proof(nonce: nb, prover: a))
        XCTAssertEqual(third, .proven(peer: b, reply: expectedReply))
        XCTAssertTrue(acceptor.isFinished)
        // b checks a's proof.
        XCTAssertEqual(dialer.receive(hello(a, proof: expectedReply.proof)), .proven(peer: a, reply: nil))
        XCTAssertTrue(dialer.isFinished)
    }

    func testAcceptingWithoutKeyBindsEveryoneAsClient() {
        var handshake = MeshHandshake(accepting: nil, ownID: a, nonce: na)
        XCTAssertNil(handshake.nonce)
        XCTAssertEqual(handshake.initialAttributes, MeshHelloAttributes())
        XCTAssertEqual(handshake.receive(hello(b, nonce: nb, proof: proofNaB)), .client)
    }

    func testAcceptingClientHelloBindsAsClient() {
        var handshake = MeshHandshake(accepting: key(), ownID: a, nonce: na)
        XCTAssertEqual(handshake.receive(hello(b, server: false)), .client)
        // A proof counts only with node_type server.
        var withProof = MeshHandshake(accepting: key(), ownID: a, nonce: na)
        XCTAssertEqual(withProof.receive(hello(b, server: false, nonce: nb, proof: proofNaB)), .client)
    }

    func testAcceptingServerWithoutProofBindsAsClient() {
        var handshake = MeshHandshake(accepting: key(), ownID: a, nonce: na)
        XCTAssertEqual(handshake.receive(hello(b, nonce: nb)), .client)
        XCTAssertTrue(handshake.isFinished)
    }

    func testAcceptingWrongProofFails() {
        var handshake = MeshHandshake(accepting: key(), ownID: a, nonce: na)
        let step = handshake.receive(hello(b, nonce: nb, proof: proofNbB))  // b's proof of the wrong nonce
        XCTAssertEqual(step, .failed(.wrongProof))
        if case .failed(let failure) = step { XCTAssertEqual(failure.counter, "mesh_auth_failed") }
    }

    func testAcceptingProofForAnotherNodeFails() {
        let c = GUID("9d2b7c1e-4f3a-4b5c-8d6e-7f8091a2b3c4")!
        var handshake = MeshHandshake(accepting: key(), ownID: a, nonce: na)
        // b's valid proof of Na, presented by c.
        XCTAssertEqual(handshake.receive(hello(c, nonce: nb, proof: proofNaB)), .failed(.wrongProof))
    }

    func testAcceptingOtherKeyFails() {
        var handshake = MeshHandshake(accepting: key("a different mesh key entirely"), ownID: a, nonce: na)
        XCTAssertEqual(handshake.receive(hello(b, nonce: nb, proof: proofNaB)), .failed(.wrongProof))
    }

    func testAcceptingMalformedProofFails() {
        var handshake = MeshHandshake(accepting: key(), ownID: a, nonce: na)
        XCTAssertEqual(handshake.receive(hello(b, nonce: nb, proof: "not hex")), .failed(.wrongProof))
    }

    func testAcceptingUppercaseProofProves() {
        var handshake = MeshHandshake(accepting: key(), ownID: a, nonce: na)
        guard case .proven(let peer, _) = handshake.receive(hello(b, nonce: nb, proof: proofNaB.uppercased())) else {
            return XCTFail("not proven")
        }
        XCTAssertEqual(peer, b)
    }

    func testAcceptingValidProofWithoutUsableNonceFails() {
        var missing = MeshHandshake(accepting: key(), ownID: a, nonce: na)
        XCTAssertEqual(missing.receive(hello(b, proof: proofNaB)), .failed(.badNonce))
        var malformed = MeshHandshake(accepting: key(), ownID: a, nonce: na)
        XCTAssertEqual(malformed.receive(hello(b, nonce: "1234", proof: proofNaB)), .failed(.badNonce))
    }

    func testAcceptingOwnIDFails() {
        var handshake = MeshHandshake(accepting: key(), ownID: a, nonce: na)
        XCTAssertEqual(handshake.receive(hello(a, nonce: nb, proof: proofNaA)), .failed(.ownID))
    }

    func testDialingPeerNotARelayFails() {
        var handshake = MeshHandshake(dialing: key(), ownID: b, nonce: nb)
        XCTAssertEqual(handshake.receive(hello(a, server: false, nonce: na)), .failed(.notARelay))
    }

    func testDialingPeerWithoutNonceFails() {
        var missing = MeshHandshake(dialing: key(), ownID: b, nonce: nb)
        XCTAssertEqual(missing.receive(hello(a)), .failed(.badNonce))
        var malformed = MeshHandshake(dialing: key(), ownID: b, nonce: nb)
        XCTAssertEqual(malformed.receive(hello(a, nonce: "zz")), .failed(.badNonce))
    }

    func testDialingOwnIDFails() {
        var handshake = MeshHandshake(dialing: key(), ownID: b, nonce: nb)
        XCTAssertEqual(handshake.receive(hello(b, nonce: na)), .failed(.ownID))
    }

    /// The proof a dialer sends is the known vector for its id and the acceptor's nonce.
    private func dialerAwaitingProof() -> MeshHandshake {
        var handshake = MeshHandshake(dialing: key(), ownID: b, nonce: nb)
        XCTAssertEqual(handshake.receive(hello(a, nonce: na)), .send(MeshHelloAttributes(nonce: nb, proof: proofNaB)))
        return handshake
    }

    func testDialingSecondHelloWithoutProofFails() {
        var handshake = dialerAwaitingProof()
        XCTAssertEqual(handshake.receive(hello(a)), .failed(.missingProof))
    }

    func testDialingWrongProofFails() {
        var handshake = dialerAwaitingProof()
        // a's proof of the acceptor's own nonce, not of Nb.
        XCTAssertEqual(handshake.receive(hello(a, proof: proofNaA)), .failed(.wrongProof))
    }

    func testDialingPeerChangedIDFails() {
        var handshake = dialerAwaitingProof()
        let c = GUID("9d2b7c1e-4f3a-4b5c-8d6e-7f8091a2b3c4")!
        XCTAssertEqual(handshake.receive(hello(c, proof: key().proof(nonce: nb, prover: c))), .failed(.peerChangedID))
    }

    func testHelloAfterFinishFails() {
        var handshake = dialerAwaitingProof()
        XCTAssertEqual(handshake.receive(hello(a, proof: key().proof(nonce: nb, prover: a))), .proven(peer: a, reply: nil))
        XCTAssertEqual(handshake.receive(hello(a, proof: key().proof(nonce: nb, prover: a))), .failed(.alreadyFinished))
        var client = MeshHandshake(accepting: key(), ownID: a, nonce: na)
        XCTAssertEqual(client.receive(hello(b, server: false)), .client)
        XCTAssertEqual(client.receive(hello(b, server: false)), .failed(.alreadyFinished))
    }

    func testFailureDescriptionsAreOneLine() {
        let failures: [MeshHandshakeFailure] = [.wrongProof, .badNonce, .missingProof, .notARelay, .ownID, .peerChangedID, .alreadyFinished]
        for failure in failures {
            XCTAssertFalse(failure.description.isEmpty)
            XCTAssertFalse(failure.description.contains("\n"))
        }
    }

    // MARK: One connection per pair

    func testKeptDialerIsTheSmallerIDAsString() {
        let low = GUID("0b370041-cd1e-40ac-ac59-0136bba850fe")!
        let high = GUID("5f715c17-4a41-482a-ab1f-45fa2cdd702b")!
        XCTAssertEqual(MeshHandshake.keptDialer(low, high), low)
        XCTAssertEqual(MeshHandshake.keptDialer(high, low), low, "both sides agree")
        XCTAssertEqual(MeshHandshake.keptDialer(low, low), low)
        XCTAssertTrue(MeshHandshake.keeps(connectionDialedBy: low, ownID: high, peer: low))
        XCTAssertTrue(MeshHandshake.keeps(connectionDialedBy: low, ownID: low, peer: high))
        XCTAssertFalse(MeshHandshake.keeps(connectionDialedBy: high, ownID: low, peer: high))
        XCTAssertFalse(MeshHandshake.keeps(connectionDialedBy: high, ownID: high, peer: low))
    }

    /// Digits sort before letters ("9…" < "a…"), and the first difference decides, even deep in
    /// the low half. GUID's `<` is numeric on (high, low); for the fixed-width lowercase form the
    /// two orders agree, which this checks on ids chosen at the boundaries.
    func testKeptDialerStringOrderCases() {
        let pairs: [(String, String)] = [
            ("9fffffff-ffff-ffff-ffff-ffffffffffff", "a0000000-0000-0000-0000-000000000000"),
            ("00000000-0000-0000-0000-00000000000f", "00000000-0000-0000-0000-000000000010"),
            ("00000000-0000-0000-8000-000000000000", "00000000-0000-0001-0000-000000000000"),
            ("abcdef00-0000-4000-8000-000000000009", "abcdef00-0000-4000-8000-00000000000a"),
        ]
        for (smaller, larger) in pairs {
            let s = GUID(smaller)!
            let l = GUID(larger)!
            XCTAssertEqual(MeshHandshake.keptDialer(s, l), s, "\(smaller) < \(larger)")
            XCTAssertEqual(MeshHandshake.keptDialer(l, s), s, "\(smaller) < \(larger)")
            XCTAssertTrue(s < l, "GUID's order agrees")
        }
        // Parsed from upper case, compared in the lowercase form.
        let upper = GUID("A0000000-0000-0000-0000-000000000000")!
        let digits = GUID("90000000-0000-0000-0000-000000000000")!
        XCTAssertEqual(MeshHandshake.keptDialer(upper, digits), digits)
    }
}

/// Returns the given values in turn, for a fixed nonce.
private struct CountingGenerator: RandomNumberGenerator {
    var values: [UInt64]
    var index = 0

    mutating func next() -> UInt64 {
        defer { index += 1 }
        return values[index % values.count]
    }
}
