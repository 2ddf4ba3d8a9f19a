import FuzzSupport
import NIOCore
import PTPProtocol

// Readers live as long as a connection does: one for every input.
nonisolated(unsafe) var reader = MessageReader()
nonisolated(unsafe) var otherReader = MessageReader()
nonisolated(unsafe) var rereader = MessageReader()

let fallbackSender = SenderTag(NodeAddress(id: GUID("9d2b7c1e-4f3a-4b5c-8d6e-7f8091a2b3c4")!, name: "relay"))

/// `MessageReader` on arbitrary frames, every verb, before and after the handshake.
///
/// Input: byte 0 bit 0 says whether the handshake is done; the rest is the frame. Checks: an
/// accepted envelope holds what its verb requires (PROFILE.md, SPEC.md); the same frame read
/// with the other handshake state differs only in a labelled chat; the frame the relay would
/// forward (head rewritten by `FrameWriter`, `msg_data` members copied) is ASCII and reads back
/// to the same message; a ROUTING frame's entries can be read by `MeshRouting`.
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

    checkForwardedCopy(envelope, frame, handshakeDone: handshakeDone, input)
    return 0
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
/// Read back in the same handshake state: a HELLO that carries `message` and `recipient` is a
/// chat only after the handshake.
func checkForwardedCopy(_ envelope: Envelope, _ frame: UnsafeRawBufferPointer, handshakeDone: Bool, _ input: UnsafeRawBufferPointer) {
    let tape = reader.tape
    var out = ByteBuffer()
    let sender = envelope.origin.map { SenderTag($0) } ?? fallbackSender
    FrameWriter.write(&out, verb: envelope.verb, messageID: envelope.messageID ?? .zero, ttl: envelope.ttl, flood: envelope.flood, sender: sender) { out in
        out.writeInteger(UInt8(ascii: "{"))
        FrameWriter.copyMembers(&out, tape: tape, bytes: frame, object: envelope.data, leadingComma: false)
        out.writeInteger(UInt8(ascii: "}"))
    }
    guard let frames = splitWrittenFrames(out), frames.count == 1 else { fuzzFailure("FrameWriter wrote no single frame", input) }
    let copy = frames[0]
    fuzzCheck(copy.allSatisfy { $0 < 0x80 }, "the forwarded frame is not ASCII", input)
    copy.withUnsafeBytes { raw in
        let again: Envelope
        do throws(InvalidMessage) {
            again = try rereader.read(raw, handshakeDone: handshakeDone)
        } catch {
            fuzzFailure("the forwarded frame is refused: \(error.reason); frame: \(String(decoding: raw, as: UTF8.self))", input)
        }
        fuzzCheck(again.verb == envelope.verb, "forwarded verb \(again.verb.name), was \(envelope.verb.name)", input)
        fuzzCheck(again.messageID == envelope.messageID, "forwarded message id differs", input)
        fuzzCheck(again.ttl == envelope.ttl && again.flood == envelope.flood, "forwarded ttl or flood differs", input)
        fuzzCheck(Array(again.recipients) == Array(envelope.recipients), "forwarded recipients differ", input)
        fuzzCheck(again.connectSource == envelope.connectSource && again.connectDestination == envelope.connectDestination, "forwarded CONNECT ends differ", input)
        fuzzCheck(again.channelID == envelope.channelID && again.reason == envelope.reason && again.nackStored == envelope.nackStored, "forwarded channel id or NACK reason differs", input)
        fuzzCheck(again.origin?.id == envelope.origin?.id || envelope.origin == nil, "forwarded origin differs", input)
    }
}
