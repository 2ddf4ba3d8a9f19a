import FuzzSupport
import NIOCore
import PTPProtocol

nonisolated(unsafe) var tape = JSONTape()
nonisolated(unsafe) var rereader = MessageReader()

let relay = SenderTag(NodeAddress(id: GUID("9d2b7c1e-4f3a-4b5c-8d6e-7f8091a2b3c4")!, name: "relay"))

/// The mesh ROUTING parser (`MeshRouting.entries`) on arbitrary frames, and a round trip of what
/// it reads: the entries written again by `MeshFrames.routing` (cut into frames of at most the
/// cap byte 0 picks, 256...8416 bytes; a frame holding one entry or none may be larger) are ASCII, each frame within the cap unless it holds one
/// entry, and read back to the same entries.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzMeshRouting(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: data, count: size)
    guard size >= 1 else { return 0 }
    let maxFrameBytes = 256 + Int(input[0]) * 32
    let frame = UnsafeRawBufferPointer(rebasing: input[1...])
    do throws(JSONTape.ParseError) { try tape.parse(frame) } catch { return 0 }

    let routing: MeshRouting
    do throws(InvalidMessage) {
        routing = try MeshRouting.entries(tape: tape, bytes: frame)
    } catch {
        fuzzCheck(!error.reason.isEmpty && error.verb == .routing, "a refusal without reason or verb", input)
        return 0
    }
    for entry in routing.entries {
        fuzzCheck((1...MeshRouteEntry.unreachable).contains(entry.ttl), "an entry with ttl \(entry.ttl) passed", input)
    }

    var out = ByteBuffer()
    var nextID = GUID(high: 1, low: 1)
    MeshFrames.routing(&out, entries: routing.entries, relay: relay, maxFrameBytes: maxFrameBytes) {
        nextID.low += 1
        return nextID
    }
    guard let frames = splitWrittenFrames(out), !frames.isEmpty else { fuzzFailure("MeshFrames.routing wrote no whole frames", input) }
    var readBack: [MeshRouteEntry] = []
    for written in frames {
        fuzzCheck(written.allSatisfy { $0 < 0x80 }, "a written ROUTING frame is not ASCII", input)
        written.withUnsafeBytes { raw in
            let envelope: Envelope
            do throws(InvalidMessage) {
                envelope = try rereader.read(raw, handshakeDone: true)
            } catch {
                fuzzFailure("a written ROUTING frame is refused: \(error.reason)", input)
            }
            fuzzCheck(envelope.verb == .routing, "a written ROUTING frame reads as \(envelope.verb.name)", input)
            do throws(InvalidMessage) {
                let again = try MeshRouting.entries(tape: rereader.tape, bytes: raw, data: envelope.data)
                fuzzCheck(again.malformed == 0 && again.relay == relay.address.id, "a written ROUTING frame has malformed entries or another relay", input)
                fuzzCheck(written.count + 4 <= maxFrameBytes || again.entries.count <= 1, "a frame of \(written.count + 4) bytes over the cap \(maxFrameBytes) with \(again.entries.count) entries", input)
                readBack += again.entries
            } catch {
                fuzzFailure("a written ROUTING frame's entries are refused: \(error.reason)", input)
            }
        }
    }
    fuzzCheck(readBack.count == routing.entries.count, "\(routing.entries.count) entries written, \(readBack.count) read back", input)
    for (original, again) in zip(routing.entries, readBack) {
        let same = original.node.id == again.node.id && (original.node.name ?? "node") == (again.node.name ?? "node")
            && original.ttl == again.ttl && original.seq == again.seq && original.legacy == again.legacy
        fuzzCheck(same, "entry \(original) read back as \(again)", input)
    }
    return 0
}
