import Crypto
import PTPProtocol

// Proof of being a relay (PROFILE.md section 9). The mesh key never travels: each side proves it
// holds it by answering the other's nonce with
//     proof(nonce) = lowercase hex of HMAC-SHA256(key: UTF-8 bytes of mesh.key,
//                    message: "ptpchat-mesh-v1:" + nonce + ":" + prover's bare lowercase node id)

/// `mesh.key`, checked and ready to prove with. Its text is never printed.
public struct MeshKey: Sendable, CustomStringConvertible {
    /// The shortest key accepted, in UTF-8 bytes.
    public static let minimumBytes = 16

    private let key: SymmetricKey

    /// The key is the UTF-8 bytes of `text` exactly as given (no trimming).
    public init(_ text: String) throws(MeshKeyError) {
        let bytes = Array(text.utf8)
        guard bytes.count >= Self.minimumBytes else { throw MeshKeyError(byteCount: bytes.count) }
        key = SymmetricKey(data: bytes)
    }

    /// The proof that `prover` holds this key, answering `nonce`: 64 lowercase hex digits.
    public func proof(nonce: String, prover: GUID) -> String {
        let code = HMAC<SHA256>.authenticationCode(for: Self.message(nonce: nonce, prover: prover), using: key)
        var hex: [UInt8] = []
        hex.reserveCapacity(64)
        for byte in code {
            hex.append(MeshProof.hexDigits[Int(byte >> 4)])
            hex.append(MeshProof.hexDigits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    /// Whether `proof` is `proof(nonce:prover:)`. Lenient in what it accepts (PROFILE.md): 64 hex
    /// digits in either letter case; anything else is false. The digits are decoded to the 32
    /// bytes of the code and checked with `HMAC<SHA256>.isValidAuthenticationCode`, which
    /// compares in constant time (swift-crypto's `safeCompare`: `CRYPTO_memcmp` on Linux).
    public func verify(proof: String, nonce: String, prover: GUID) -> Bool {
        guard let code = MeshProof.decodeHex(proof, digits: 64) else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(code, authenticating: Self.message(nonce: nonce, prover: prover), using: key)
    }

    private static func message(nonce: String, prover: GUID) -> [UInt8] {
        Array("ptpchat-mesh-v1:\(nonce):\(prover)".utf8)  // GUID.description is bare lower case
    }

    public var description: String { "MeshKey(redacted)" }
}

/// `mesh.key` refused at start-up.
public struct MeshKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    public var byteCount: Int

    public var description: String {
        "mesh.key is \(byteCount) bytes long; it must be at least \(MeshKey.minimumBytes) bytes (UTF-8)"
    }
}

/// Nonces and hex helpers of the peering proof.
public enum MeshProof {
    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// A new nonce for one connection: 32 lowercase hex digits (128 bits) from the system's
    /// cryptographically secure generator.
    public static func makeNonce() -> String {
        var generator = SystemRandomNumberGenerator()
        return makeNonce(using: &generator)
    }

    /// A nonce from `generator` (tests); the relay uses `makeNonce()`.
    public static func makeNonce<G: RandomNumberGenerator>(using generator: inout G) -> String {
        var hex: [UInt8] = []
        hex.reserveCapacity(32)
        for _ in 0..<2 {
            let word: UInt64 = generator.next()
            for shift in stride(from: 60, through: 0, by: -4) {
                hex.append(hexDigits[Int((word >> UInt64(shift)) & 0xF)])
            }
        }
        return String(decoding: hex, as: UTF8.self)
    }

    /// A nonce as the profile has it, 32 hex digits; either letter case is accepted on receipt
    /// (the proof covers the nonce exactly as it was sent, so the case needs no normalizing).
    public static func isWellFormedNonce(_ nonce: String) -> Bool {
        decodeHex(nonce, digits: 32) != nil
    }

    /// The bytes of exactly `digits` hex digits (either case), or nil.
    static func decodeHex(_ text: String, digits: Int) -> [UInt8]? {
        let utf8 = text.utf8
        guard utf8.count == digits else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits / 2)
        var high: UInt8?
        for character in utf8 {
            let value: UInt8
            switch character {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): value = character &- UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): value = character &- UInt8(ascii: "a") &+ 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): value = character &- UInt8(ascii: "A") &+ 10
            default: return nil
            }
            if let first = high {
                bytes.append(first << 4 | value)
                high = nil
            } else {
                high = value
            }
        }
        return bytes
    }
}

/// The attributes to put in a relay HELLO (`MeshFrames.hello`).
public struct MeshHelloAttributes: Sendable, Equatable {
    public var nonce: String?
    public var proof: String?

    public init(nonce: String? = nil, proof: String? = nil) {
        self.nonce = nonce
        self.proof = proof
    }
}

/// What the handshake reads of a HELLO received (`Envelope.origin`, `declaresServer`,
/// `meshNonce`, `meshProof`).
public struct MeshHelloReceived: Sendable, Equatable {
    public var nodeID: GUID
    public var declaresServer: Bool
    public var nonce: String?
    public var proof: String?

    public init(nodeID: GUID, declaresServer: Bool, nonce: String?, proof: String?) {
        self.nodeID = nodeID
        self.declaresServer = declaresServer
        self.nonce = nonce
        self.proof = proof
    }
}

/// Why a peering handshake failed. Every failure closes the connection; a dialer redials later.
public enum MeshHandshakeFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// `mesh_proof` is not the proof of our nonce for the peer's id (or not 64 hex digits).
    case wrongProof
    /// The peer's HELLO has no `mesh_nonce`, or one that is not 32 hex digits, so it cannot be
    /// answered (a dialed relay without `mesh.key` sends none).
    case badNonce
    /// Dialing: the second HELLO of the accepting relay carries no `mesh_proof` (it bound this
    /// relay as a client: it has no key, or a different one).
    case missingProof
    /// Dialing: the dialed node's HELLO does not say `node_type: server`.
    case notARelay
    /// The peer claims this relay's own id (a relay dialing itself, or a reflection).
    case ownID
    /// Dialing: the second HELLO names another node than the first.
    case peerChangedID
    /// A HELLO given to a handshake that already finished (a caller error).
    case alreadyFinished

    /// The counter a relay adds to: PROFILE.md counts every failed proof `mesh_auth_failed`;
    /// a relay that does not prove it holds the key has failed it, whatever the reason.
    public var counter: String { "mesh_auth_failed" }

    public var description: String {
        switch self {
        case .wrongProof: return "mesh_proof does not match"
        case .badNonce: return "no valid mesh_nonce (32 hex digits)"
        case .missingProof: return "no mesh_proof in the peer's second HELLO"
        case .notARelay: return "the dialed node is not a relay (node_type is not server)"
        case .ownID: return "the peer claims this relay's own node id"
        case .peerChangedID: return "the peer's second HELLO names another node id"
        case .alreadyFinished: return "HELLO after the mesh handshake finished"
        }
    }
}

/// The three-message peering handshake of one connection, as a value (PROFILE.md section 9):
///
/// 1. the accepting relay sends its HELLO with nonce Na (`initialAttributes`);
/// 2. the dialing relay answers with nonce Nb and proof(Na);
/// 3. the accepting relay checks it and sends a second HELLO with proof(Nb), which the dialer checks.
///
/// Feed it every HELLO received until it returns `.proven`, `.client` or `.failed`; do what the
/// step says (send a HELLO via `MeshFrames.hello` with the attributes given, then bind or close).
public struct MeshHandshake: Sendable {
    public enum Role: Sendable, Equatable {
        /// Accepted the connection: sent the first HELLO.
        case accepting
        /// Dialed the connection: answers the accepting relay's HELLO.
        case dialing
    }

    public enum Step: Sendable, Equatable {
        /// Send a HELLO with these attributes and wait for the peer's next HELLO (dialing only).
        case send(MeshHelloAttributes)
        /// The peer proved it is a relay of this mesh: bind it as a peer, after sending a HELLO
        /// with `reply` when it is not nil (accepting: the proof of the dialer's nonce).
        case proven(peer: GUID, reply: MeshHelloAttributes?)
        /// Bind the connection as a client (accepting only): no mesh key here, a HELLO that is
        /// not `node_type: server`, or one without `mesh_proof`.
        case client
        /// Close the connection (log at warning, count `failure.counter`).
        case failed(MeshHandshakeFailure)
    }

    private enum State: Sendable {
        case awaitingDialer
        case awaitingAcceptor
        case awaitingProof(peer: GUID)
        case finished
    }

    public let role: Role
    /// This connection's nonce (nil when accepting without a key).
    public let nonce: String?
    private let key: MeshKey?
    private let ownID: GUID
    private var state: State

    /// An accepted connection. Without `key` the relay has no mesh: every HELLO binds as a client.
    public init(accepting key: MeshKey?, ownID: GUID, nonce: String? = nil) {
        role = .accepting
        self.key = key
        self.ownID = ownID
        self.nonce = key == nil ? nil : (nonce ?? MeshProof.makeNonce())
        state = .awaitingDialer
    }

    /// A dialed connection to a peer relay.
    public init(dialing key: MeshKey, ownID: GUID, nonce: String? = nil) {
        role = .dialing
        self.key = key
        self.ownID = ownID
        self.nonce = nonce ?? MeshProof.makeNonce()
        state = .awaitingAcceptor
    }

    /// The attributes of the first HELLO an accepting relay sends (`mesh_nonce` when it has a
    /// key, nothing without one); nil when dialing (the dialer speaks second).
    public var initialAttributes: MeshHelloAttributes? {
        role == .accepting ? MeshHelloAttributes(nonce: nonce) : nil
    }

    /// Whether the handshake has given its last step.
    public var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    /// The next step after a HELLO from the peer.
    public mutating func receive(_ hello: MeshHelloReceived) -> Step {
        let step = next(hello)
        switch step {
        case .send: break
        case .proven, .client, .failed: state = .finished
        }
        return step
    }

    private mutating func next(_ hello: MeshHelloReceived) -> Step {
        switch state {
        case .finished:
            return .failed(.alreadyFinished)

        case .awaitingDialer:
            guard let key, let nonce, hello.declaresServer, let proof = hello.proof else { return .client }
            guard hello.nodeID != ownID else { return .failed(.ownID) }
            guard key.verify(proof: proof, nonce: nonce, prover: hello.nodeID) else { return .failed(.wrongProof) }
            guard let theirs = hello.nonce, MeshProof.isWellFormedNonce(theirs) else { return .failed(.badNonce) }
            return .proven(peer: hello.nodeID, reply: MeshHelloAttributes(proof: key.proof(nonce: theirs, prover: ownID)))

        case .awaitingAcceptor:
            guard let key, let nonce else { return .failed(.alreadyFinished) }  // dialing always has both
            guard hello.declaresServer else { return .failed(.notARelay) }
            guard hello.nodeID != ownID else { return .failed(.ownID) }
            guard let theirs = hello.nonce, MeshProof.isWellFormedNonce(theirs) else { return .failed(.badNonce) }
            state = .awaitingProof(peer: hello.nodeID)
            return .send(MeshHelloAttributes(nonce: nonce, proof: key.proof(nonce: theirs, prover: ownID)))

        case .awaitingProof(let peer):
            guard let key, let nonce else { return .failed(.alreadyFinished) }
            guard hello.nodeID == peer else { return .failed(.peerChangedID) }
            guard let proof = hello.proof else { return .failed(.missingProof) }
            guard key.verify(proof: proof, nonce: nonce, prover: peer) else { return .failed(.wrongProof) }
            return .proven(peer: peer, reply: nil)
        }
    }

    /// At most one connection per pair of relays (PROFILE.md section 9): of two proven
    /// connections between `a` and `b`, both keep the one dialed by the relay with the smaller
    /// node id, the bare lowercase GUIDs compared as strings. (For the fixed-width lowercase hex
    /// form this is the same order as `GUID`'s `<`; the string form is what the profile says.)
    public static func keptDialer(_ a: GUID, _ b: GUID) -> GUID {
        a.description < b.description ? a : b
    }

    /// Whether the connection between `ownID` and `peer` that `dialer` dialed is the one to keep.
    public static func keeps(connectionDialedBy dialer: GUID, ownID: GUID, peer: GUID) -> Bool {
        dialer == keptDialer(ownID, peer)
    }
}
