import FuzzSupport
import NIOCore
import PTPProtocol

// Readers live as long as a connection does: one for every input.
nonisolated(unsafe) var reader = MessageReader()
nonisolated(unsafe) var otherReader = MessageReader()
nonisolated(unsafe) var rereader = MessageReader()
nonisolated(unsafe) var repeatReader = MessageReader()

let fallbackSender = SenderTag(NodeAddress(id: GUID("9d2b7c1e-4f3a-4b5c-8d6e-7f8091a2b3c4")!, name: "relay"))

/// `MessageReader` on arbitrary frames, every verb, before and after the handshake.
///
/// Input: byte 0 bit 0 says whether the handshake is done; the rest is the frame. Checks: an
/// accepted envelope holds what its verb requires (PROFILE.md, SPEC.md); the same frame read
/// with the other handshake state differs only in a labelled chat; the frame the relay forwards
/// (`ForwardedFrames`) is ASCII and reads back to the same message; a ROUTING frame's entries can
/// be read by `MeshRouting`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMessageReader(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    guard size >= 1 else { return 0 }
    let handshakeDone = input[0] & 1 == 1
    let frame = UnsafeRawBufferPointer(rebasing: input[1...])

    let envelope: Envelope
    do throws(InvalidMessage) {
        envelope = try reader.read(frame, handshakeDone: handshakeDone)
    } catch {
        fuzzCheck(!error.reason.isEmpty, "an InvalidMessage without a reason", input)
        // The other handshake state refuses it too: only a HELLO's reading depends on it, and a
        // labelled chat is checked as a MESSAGE, which asks for more than a HELLO does... except
        // for the HELLO checks themselves, so no claim is made here.
        return 0
    }
    checkVerbRequirements(envelope, handshakeDone: handshakeDone, input)

    // The other handshake state.
    if let other = try? otherReader.read(frame, handshakeDone: !handshakeDone) {
        if envelope.isLabelledChat || other.isLabelledChat {
            fuzzCheck(envelope.verb != other.verb, "a labelled chat reads the same before and after the handshake", input)
        } else {
            fuzzCheck(envelope.verb == other.verb && envelope.messageID == other.messageID, "the handshake state changed a frame that is no labelled chat", input)
        }
    }

    if envelope.verb == .routing {
        do throws(InvalidMessage) {
            let routing = try MeshRouting.entries(tape: reader.tape, bytes: frame, data: envelope.data)
            let nodes = reader.tape.member("nodes", in: envelope.data, of: frame)!
            fuzzCheck(routing.entries.count + routing.malformed == reader.tape.count(of: nodes), "MeshRouting lost entries", input)
        } catch {
            fuzzFailure("MessageReader accepted a ROUTING that MeshRouting refuses: \(error.reason)", input)
        }
    }

    checkForwardedFrame(envelope, frame, input)
    checkRepeatedAck(envelope, frame, handshakeDone: handshakeDone, input)
    checkRepeatedMessage(envelope, frame, handshakeDone: handshakeDone, input)
    return 0
}

/// An ACK the relay remembers reads back as the reader read it, and so do copies with other ids
/// in its `msg_id` fields (head and `msg_data`, each a fresh id from the input or all zeros):
/// whenever `RepeatedAck` answers for a copy, the reader reads the copy the same way.
/// (RepeatedAckTests also tries the frames a few byte edits away.)
func checkRepeatedAck(_ envelope: Envelope, _ frame: UnsafeRawBufferPointer, handshakeDone: Bool, _ input: UnsafeRawBufferPointer) {
    guard envelope.verb == .ack, let ack = reader.repeatedAck(frame, envelope) else { return }
    // With no non-zero id at all it leaves the frame to the reader (which then finds no id).
    let again = ack.envelope(of: frame)
    if envelope.messageID != nil {
        fuzzCheck(again == envelope, "a remembered ACK reads back differently", input)
    } else {
        fuzzCheck(again == nil, "a remembered ACK without an id is read without the reader", input)
    }
    // The string values of every `msg_id` key, in the head and in `msg_data`.
    var fields: [Range<Int>] = []
    let tape = reader.tape
    for object in [0, envelope.data] {
        tape.forEachMember(of: object) { key, value in
            let token = tape[value]
            if !tape[key].escaped, JSONTape.equals("msg_id", frame, Int(tape[key].start), Int(tape[key].end)),
                token.kind == .string, token.end - token.start == 36 {
                fields.append(Int(token.start)..<Int(token.end))
            }
        }
    }
    // Ids from the input's own bytes, so that a failure replays from its input alone.
    var seed: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in input { seed = (seed ^ UInt64(byte)) &* 0x100_0000_01B3 }
    var random = SeededRandom(seed: seed)
    for variant in 0..<4 {
        var copy = Array(frame)
        for (index, field) in fields.enumerated() {
            let zero = (variant >> index) & 1 == 1 && variant != 0
            let id = zero ? GUID.zero : GUID(high: random.next(), low: random.next())
            copy.replaceSubrange(field, with: Array((variant == 3 ? id.description.uppercased() : id.description).utf8))
        }
        guard let repeated = copy.withUnsafeBytes({ ack.envelope(of: $0) }) else { continue }
        let full = copy.withUnsafeBytes { try? rereader.read($0, handshakeDone: handshakeDone) }
        fuzzCheck(repeated == full, "a repeated ACK reads differently from its parse", input)
    }
}

/// A MESSAGE the relay remembers reads back as the reader read it, envelope and tape, and so do
/// copies a few byte edits away (a byte changed, inserted or removed, in its text or anywhere,
/// the bytes and places taken from the input): whenever `RepeatedMessage` answers for a copy, the
/// reader reads the copy the same way and makes the same tape. (RepeatedMessageTests also tries
/// every client's frames with other ids and texts.)
func checkRepeatedMessage(_ envelope: Envelope, _ frame: UnsafeRawBufferPointer, handshakeDone: Bool, _ input: UnsafeRawBufferPointer) {
    guard handshakeDone, envelope.verb == .message, let message = reader.repeatedMessage(frame, envelope) else { return }
    func tokens(_ tape: JSONTape) -> [[Int32]] {
        tape.tokens.map { [Int32($0.kind.rawValue), $0.escaped ? 1 : 0, $0.start, $0.end, $0.next] }
    }
    // It reads back: its holes hold what they held (`repeatedMessage` keeps no escaped text).
    guard let again = message.envelope(of: frame, into: &repeatReader.tape) else {
        fuzzFailure("a remembered MESSAGE does not read back", input)
    }
    fuzzCheck(again == envelope, "a remembered MESSAGE reads back differently", input)
    fuzzCheck(tokens(repeatReader.tape) == tokens(reader.tape) && repeatReader.tape.isCompactASCII == reader.tape.isCompactASCII, "a remembered MESSAGE's tape differs from its parse", input)
    // Where the text is, to edit it more often than the rest.
    var text = 0..<frame.count
    if let data = reader.tape.member("msg_data", in: 0, of: frame), let value = reader.tape.member("message", in: data, of: frame),
        reader.tape[value].kind == .string {
        text = Int(reader.tape[value].start)..<Int(reader.tape[value].end) + 1
    }
    var seed: UInt64 = 0x84222325CBF29CE4
    for byte in input { seed = (seed ^ UInt64(byte)) &* 0x100_0000_01B3 }
    var random = SeededRandom(seed: seed)
    for _ in 0..<8 {
        var copy = Array(frame)
        for _ in 0..<Int.random(in: 1...2, using: &random) where !copy.isEmpty {
            let range = Bool.random(using: &random) && text.upperBound <= copy.count ? text : 0..<copy.count
            let at = Int.random(in: range, using: &random)
            let byte = input[Int.random(in: 0..<input.count, using: &random)]
            switch Int.random(in: 0..<3, using: &random) {
            case 0: copy[at] = byte
            case 1: copy.insert(byte, at: at)
            default: copy.remove(at: at)
            }
        }
        guard let repeated = copy.withUnsafeBytes({ message.envelope(of: $0, into: &repeatReader.tape) }) else { continue }
        let full = copy.withUnsafeBytes { try? rereader.read($0, handshakeDone: true) }
        fuzzCheck(repeated == full, "a repeated MESSAGE reads differently from its parse", input)
        fuzzCheck(tokens(repeatReader.tape) == tokens(rereader.tape) && repeatReader.tape.isCompactASCII == rereader.tape.isCompactASCII, "a repeated MESSAGE's tape differs from its parse", input)
    }
}

func checkVerbRequirements(_ envelope: Envelope, handshakeDone: Bool, _ input: UnsafeRawBufferPointer) {
    let tape = reader.tape
    fuzzCheck(envelope.data > 0 && envelope.data < tape.count && tape[envelope.data].kind == .object, "msg_data token is not an object", input)
    fuzzCheck(!envelope.isLabelledChat || (handshakeDone && envelope.verb == .message), "labelled chat before the handshake", input)
    if let id = envelope.messageID { fuzzCheck(!id.isZero, "a zero message id", input) }
    switch envelope.verb {
    case .hello:
        fuzzCheck(envelope.origin != nil, "HELLO without an origin", input)
    case .message:
        fuzzCheck(envelope.messageID != nil && !envelope.recipients.isEmpty, "MESSAGE without id or recipients", input)
    case .certificate, .key:
        fuzzCheck(envelope.messageID != nil && envelope.recipientID != nil, "\(envelope.verb.name) without id or recipient", input)
    case .getCertificate, .getKey:
        fuzzCheck(envelope.messageID != nil, "\(envelope.verb.name) without id", input)
    case .connect:
        fuzzCheck(envelope.connectSource != nil && envelope.connectDestination != nil, "CONNECT without both ends", input)
    case .channel:
        fuzzCheck(envelope.channelID != nil, "CHANNEL without channel_id", input)
    case .ack, .nack, .join, .leave, .routing:
        break
    }
}

/// The frame the relay forwards: its own head, the `msg_data` members copied as they are.
/// The frame the relay writes when it passes the message on (`ForwardedFrames`, as RelayShard
/// calls it: unicast narrowed to one recipient when there are several, floods, CONNECT) is ASCII
/// and reads back to the same message with the outgoing ttl. HELLO, ACK, NACK and ROUTING are
/// answered, never passed on.
func checkForwardedFrame(_ envelope: Envelope, _ frame: UnsafeRawBufferPointer, _ input: UnsafeRawBufferPointer) {
    let tape = reader.tape
    let json = ReceivedJSON(tape: tape, bytes: frame)
    let ttl = Forwarding.outgoingTTL(of: envelope)
    guard ttl >= 1 else { return }
    let sender = envelope.origin.map { SenderTag($0) } ?? fallbackSender
    var out = ByteBuffer()
    var expectedRecipients = Recipients()
    var expectedID = envelope.messageID
    switch envelope.verb {
    case .message, .certificate, .key, .getCertificate, .getKey:
        guard let id = envelope.messageID else { fuzzFailure("an accepted \(envelope.verb.name) without id", input) }
        let hop = envelope.recipients.count > 1 ? Recipients(envelope.recipients[envelope.recipients.startIndex]) : envelope.recipients
        let narrowed = Forwarding.narrowedRecipients(of: envelope, for: hop)
        expectedRecipients = narrowed ?? envelope.recipients
        ForwardedFrames.unicast(&out, verb: envelope.verb, data: envelope.data, from: json, messageID: id, ttl: ttl, sender: sender, recipients: narrowed)
    case .join, .leave, .channel:
        // The relay drops a flood without id (`flood_no_id`).
        guard let id = envelope.floodID else { return }
        ForwardedFrames.flood(&out, envelope, from: json, floodID: id, ttl: ttl, sender: sender)
    case .connect:
        func text(_ key: StaticString) -> String? {
            guard let token = tape.member(key, in: envelope.data, of: frame), tape[token].kind == .string else { return nil }
            return tape.string(token, of: frame)
        }
        let id = envelope.messageID ?? GUID(high: 1, low: 1)
        expectedID = id
        // As the relay forwards it: the round-trip hints it carried passed on, the other members copied.
        let carried = ForwardedFrames.connectRoundTrips(data: envelope.data, from: json)
        ForwardedFrames.connect(
            &out, messageID: id, ttl: ttl, sender: sender, source: envelope.connectSource!,
            destination: envelope.connectDestination!, src: text("src"), dst: text("dst"), srcRTT: carried.src,
            dstRTT: carried.dst, otherMembers: ForwardedFrames.connectOtherMembers(data: envelope.data, from: json))
    case .hello, .ack, .nack, .routing:
        return
    }
    guard let frames = splitWrittenFrames(out), frames.count == 1 else { fuzzFailure("ForwardedFrames wrote no single frame", input) }
    let copy = frames[0]
    fuzzCheck(copy.allSatisfy { $0 < 0x80 }, "the forwarded frame is not ASCII", input)
    copy.withUnsafeBytes { raw in
        let again: Envelope
        do throws(InvalidMessage) {
            again = try rereader.read(raw, handshakeDone: true)
        } catch {
            fuzzFailure("the forwarded frame is refused: \(error.reason); frame: \(String(decoding: raw, as: UTF8.self))", input)
        }
        fuzzCheck(again.verb == envelope.verb, "forwarded verb \(again.verb.name), was \(envelope.verb.name)", input)
        fuzzCheck(again.messageID == expectedID, "forwarded message id \(String(describing: again.messageID)), expected \(String(describing: expectedID))", input)
        fuzzCheck(again.ttl == ttl && again.flood == (envelope.verb == .join || envelope.verb == .leave || envelope.verb == .channel), "forwarded ttl or flood differs", input)
        fuzzCheck(Array(again.recipients) == Array(expectedRecipients), "forwarded recipients \(Array(again.recipients)), expected \(Array(expectedRecipients))", input)
        fuzzCheck(again.channelID == envelope.channelID, "forwarded channel id differs", input)
        if envelope.verb == .connect {
            fuzzCheck(again.connectSource == envelope.connectSource && again.connectDestination == envelope.connectDestination, "forwarded CONNECT ends differ", input)
        }
        // A message that names no sender is written with the relay's tag here (the relay writes
        // the bound node's): only a named origin must survive.
        if let origin = envelope.origin {
            fuzzCheck(again.origin?.id == origin.id, "forwarded origin differs", input)
        }
        // PROFILE.md: a forwarded flood always carries its id in msg_data (the existing client
        // reads it there).
        if again.verb == .join || again.verb == .leave || again.verb == .channel {
            let dataID = rereader.tape.member("msg_id", in: again.data, of: raw).flatMap { token -> GUID? in
                rereader.tape[token].kind == .string ? GUID(canonical: rereader.tape.rawString(token, of: raw)) : nil
            }
            fuzzCheck(dataID == expectedID, "forwarded flood's msg_data.msg_id is \(String(describing: dataID)), not its id \(String(describing: expectedID))", input)
        }
    }
}
