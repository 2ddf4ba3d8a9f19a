// nio-floor-relay: the floor of Swift on SwiftNIO for a ptpchat relay (issue 10).
//
// What it is for: the C baseline relay (../shared/bench/baseline-relay.c) is the ceiling the relay
// is measured against. This program is the same algorithm, as close to line for line as NIO allows,
// with the least code per frame: whatever it costs above the C baseline is the price of Swift on
// NIO itself (channels, pipeline, selector, ByteBuffer, ARC), not of the relay's design. The gap
// between it and the relay is what the relay's own code costs. Benchmarks/nio-floor.sh measures all
// three side by side; docs/performance.md "The floor of Swift on NIO" has the figures.
//
// It is not a product: no store, no limits, no mesh, no TLS, no validation beyond what routing needs
// (exactly what baseline-relay checks), no back-pressure (the load is windowed).
//
// Framing: 4-byte big-endian length N, then N bytes of JSON; N == 0 is a keepalive.
//   HELLO   -> register msg_data.node_id -> this connection, answer with our HELLO (with
//              --hello-at-accept: our HELLO goes out at accept and the answer is a ROUTING with no
//              routes, the two writes PROFILE.md section 4 asks of the relay per handshake)
//   MESSAGE -> remember msg_id -> sender, ttl-1 (textually, same width), forward the frame to every
//              msg_data.recipient[].node_id connection
//   ACK     -> look up msg_id, send an ACK (our node_id) to the original sender, forget msg_id
//
// Concurrency: one MultiThreadedEventLoopGroup loop per core (or --threads N). The node and msg_id
// tables are one dictionary pair behind one NIOLock (taken only when there is more than one loop,
// as baseline-relay takes its stripe locks only with --threads > 1). Each connection (`Conn`) is
// owned by its channel's loop: only that loop touches its buffers. A frame for a connection on
// another loop is staged in a per-loop-pair outbox and handed over in one `execute` per tick (the
// baseline's equivalent: any worker appends to any connection's mutex-protected output buffer).
//
// Writes are batched as in the baseline: frames are appended to the target connection's own output
// ByteBuffer and each touched connection gets one writeAndFlush at the end of the loop tick (one
// `execute` per tick, run by NIO after the tick's I/O events).
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch

// MARK: - keys and tables

/// 128-bit key of an id: the UUID's bits, or two FNV-style hashes otherwise (baseline's id_key).
struct Key: Hashable {
    var hi: UInt64
    var lo: UInt64

    func hash(into hasher: inout Hasher) {
        hasher.combine(hi ^ lo)
    }

    // Dictionary asks for this; answering it directly skips SipHash (the baseline hashes with
    // mix64). An underscored standard library entry point, fine for a measuring instrument.
    func _rawHashValue(seed: Int) -> Int {
        Int(truncatingIfNeeded: mix64(hi ^ mix64(lo ^ UInt64(truncatingIfNeeded: seed) ^ 0x5bd1_e995)))
    }
}

@inline(__always) func mix64(_ x: UInt64) -> UInt64 {
    var z = (x ^ (x >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return z ^ (z >> 31)
}

/// 8 ASCII hex digits, first digit in the lowest byte -> 32 bits, or nil (common.h's hex8_swar).
@inline(__always) func hex8(_ w: UInt64) -> UInt64? {
    let h: UInt64 = 0x8080_8080_8080_8080
    if w & h != 0 { return nil }
    let l = w | 0x2020_2020_2020_2020
    let digit = (w &+ 0x5050_5050_5050_5050) & ~(w &+ 0x4646_4646_4646_4646)
    let alpha = (l &+ 0x1f1f_1f1f_1f1f_1f1f) & ~(l &+ 0x1919_1919_1919_1919)
    if (digit | alpha) & h != h { return nil }
    var v = (w & 0x0f0f_0f0f_0f0f_0f0f) &+ 9 &* ((w >> 6) & 0x0101_0101_0101_0101)
    v = ((v << 4) | (v >> 8)) & 0x00ff_00ff_00ff_00ff
    v = (v | (v >> 8)) & 0x0000_ffff_0000_ffff
    v = (v | (v >> 16)) & 0xffff_ffff
    return UInt64(UInt32(truncatingIfNeeded: v).byteSwapped)
}

@inline(__always) func load64(_ p: UnsafePointer<UInt8>) -> UInt64 {
    UInt64(littleEndian: UnsafeRawPointer(p).loadUnaligned(as: UInt64.self))
}

@inline(__always) func load32(_ p: UnsafePointer<UInt8>) -> UInt64 {
    UInt64(UInt32(littleEndian: UnsafeRawPointer(p).loadUnaligned(as: UInt32.self)))
}

func idKey(_ p: UnsafePointer<UInt8>, _ n: Int) -> Key {
    let dash = UInt8(ascii: "-")
    if n == 36 && p[8] == dash && p[13] == dash && p[18] == dash && p[23] == dash,
        let r0 = hex8(load64(p)), let r1 = hex8(load32(p + 9) | load32(p + 14) << 32),
        let r2 = hex8(load32(p + 19) | load32(p + 24) << 32), let r3 = hex8(load64(p + 28))
    {
        let hi = r0 << 32 | r1
        let lo = r2 << 32 | r3
        return Key(hi: hi, lo: hi == 0 && lo == 0 ? 1 : lo)
    }
    var a: UInt64 = 0xcbf2_9ce4_8422_2325
    var b: UInt64 = 0x8422_2325_cbf2_9ce4
    for i in 0..<n {
        a = (a ^ UInt64(p[i])) &* 0x100_0000_01b3
        b = (b ^ UInt64(p[i])) &* 0x9e37_79b9_7f4a_7c15
    }
    let k = Key(hi: mix64(a), lo: mix64(b ^ UInt64(n)))
    return k.hi == 0 && k.lo == 0 ? Key(hi: 0, lo: 1) : k
}

/// Node id -> connection and msg_id -> sender. Shared by all loops; `locked` is false with one loop.
final class Tables: @unchecked Sendable {  // every access goes through `with`, under `lock` when shared
    private let lock = NIOLock()
    private let locked: Bool
    var nodes: [Key: Conn] = [:]
    var msgs: [Key: Conn] = [:]
    init(locked: Bool) { self.locked = locked }
    @inline(__always) func with<R>(_ body: (Tables) -> R) -> R {
        if locked { return lock.withLock { body(self) } }
        return body(self)
    }
}

// MARK: - per-loop state

/// What one event loop has touched this tick: connections with bytes in `out`, and frames for
/// connections owned by other loops (`outbox[i]` for loop i).
final class LoopState: @unchecked Sendable {  // touched only on `loop` (handed over by `execute`)
    let loop: EventLoop
    let index: Int
    var peers: [LoopState] = []
    var dirty: [Conn] = []
    var outbox: [Staged]
    private var flushScheduled = false
    /// --flush-at-read-complete: set between a connection's first `channelRead` and its
    /// `channelReadComplete`, which flushes itself (no `execute` for the tick).
    var inReadCycle = false

    struct Staged {
        var bytes: ByteBuffer
        var entries: [(Conn, Int)] = []  // target, frame length in `bytes` (in order)
    }

    init(loop: EventLoop, index: Int, loops: Int) {
        self.loop = loop
        self.index = index
        self.outbox = (0..<loops).map { _ in Staged(bytes: ByteBuffer()) }
    }

    @inline(__always) func markDirty(_ c: Conn) {
        if !c.dirty {
            c.dirty = true
            dirty.append(c)
        }
        scheduleFlush()
    }

    @inline(__always) func scheduleFlush() {
        if !flushScheduled && !inReadCycle {
            flushScheduled = true
            loop.execute { self.flush() }  // NIO runs tasks after the tick's I/O events
        }
    }

    /// End of the tick: hand staged frames to their loops, then one writeAndFlush per dirty conn.
    func flush() {
        flushScheduled = false
        for i in outbox.indices where !outbox[i].entries.isEmpty {
            let batch = outbox[i]
            outbox[i] = Staged(bytes: ByteBuffer())
            let peer = peers[i]
            peer.loop.execute { peer.deliver(batch) }
        }
        for c in dirty {
            c.dirty = false
            if let ctx = c.context, c.out.readableBytes > 0 {
                ctx.writeAndFlush(NIOAny(c.out), promise: nil)
                c.out.clear()  // reuses the storage when the socket took it all (unique again)
            }
        }
        dirty.removeAll(keepingCapacity: true)
    }

    /// Frames staged by another loop for connections of this one.
    func deliver(_ batch: Staged) {
        var bytes = batch.bytes
        for (c, n) in batch.entries {
            let slice = bytes.readSlice(length: n)!
            if c.context != nil {
                c.out.writeImmutableBuffer(slice)
                markDirty(c)
            }
        }
    }
}

// MARK: - the relay

final class Relay: Sendable {
    let tables: Tables
    let relayID: [UInt8]
    let helloFrame: [UInt8]
    let ackPrefix: [UInt8]  // an ACK frame's JSON up to the acknowledged msg_id
    /// The contract's handshake: HELLO at accept, then a ROUTING (`routingFrame`) for the client's HELLO.
    let helloAtAccept: Bool
    /// Flush at each connection's `channelReadComplete` instead of once per tick.
    let flushAtReadComplete: Bool
    let routingFrame: [UInt8]

    init(locked: Bool, helloAtAccept: Bool, flushAtReadComplete: Bool) {
        self.helloAtAccept = helloAtAccept
        self.flushAtReadComplete = flushAtReadComplete
        tables = Tables(locked: locked)
        var rng = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef".utf8)
        var id: [UInt8] = []
        for i in 0..<32 {
            if i == 8 || i == 12 || i == 16 || i == 20 { id.append(UInt8(ascii: "-")) }
            var d = Int(rng.next() & 15)
            if i == 12 { d = 4 }  // version 4
            if i == 16 { d = 8 | (d & 3) }  // variant
            id.append(hex[d])
        }
        relayID = id
        let json = Array(
            (#"{"msg_type":"HELLO","ttl":1,"flood":false,"msg_data":{"node_id":""#
                + String(decoding: id, as: UTF8.self)
                + #"","version":"nio-floor-relay/1","attributes":{"node_type":"server"}}}"#).utf8)
        var frame: [UInt8] = []
        withUnsafeBytes(of: UInt32(json.count).bigEndian) { frame.append(contentsOf: $0) }
        helloFrame = frame + json
        let routing = Array(
            (#"{"msg_type":"ROUTING","ttl":1,"flood":false,"msg_data":{"node_id":""#
                + String(decoding: id, as: UTF8.self) + #"","nodes":[]}}"#).utf8)
        var routingFrame: [UInt8] = []
        withUnsafeBytes(of: UInt32(routing.count).bigEndian) { routingFrame.append(contentsOf: $0) }
        self.routingFrame = routingFrame + routing
        ackPrefix = Array(#"{"msg_type":"ACK","ttl":1,"flood":false,"msg_data":{"node_id":""#.utf8) + id
            + Array(#"","msg_id":""#.utf8)
    }
}

/// One connection: its handler, its output buffer, its node id. Owned by its channel's loop.
final class Conn: ChannelInboundHandler, @unchecked Sendable {  // touched only on its loop
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let relay: Relay
    let state: LoopState
    var context: ChannelHandlerContext?  // nil once closed: frames for it are dropped
    var carry = ByteBuffer()  // an incomplete frame from the previous read
    var out: ByteBuffer  // frames for this connection, written once per tick
    var dirty = false
    var node: Key?

    init(relay: Relay, state: LoopState) {
        self.relay = relay
        self.state = state
        self.out = ByteBuffer()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        out = context.channel.allocator.buffer(capacity: 4096)
    }

    func channelActive(context: ChannelHandlerContext) {
        if relay.helloAtAccept { relay.helloFrame.withUnsafeBytes { send(self, $0) } }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        state.inReadCycle = false  // a read cycle ended by the close has no channelReadComplete here
        if let node {
            relay.tables.with { t in
                if t.nodes[node] === self { t.nodes[node] = nil }
            }
        }
        self.context = nil
        self.node = nil
        out = ByteBuffer()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if relay.flushAtReadComplete {
            state.inReadCycle = false
            state.flush()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if relay.flushAtReadComplete { state.inReadCycle = true }
        let incoming = unwrapInboundIn(data)
        if carry.readableBytes == 0 {
            carry = incoming
        } else {
            carry.writeImmutableBuffer(incoming)
        }
        let bad = carry.withUnsafeReadableBytes { raw -> Int? in
            let base = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            var off = 0
            while raw.count - off >= 4 {
                let n = Int(base[off]) << 24 | Int(base[off + 1]) << 16 | Int(base[off + 2]) << 8 | Int(base[off + 3])
                if n > 16 << 20 { return nil }
                if raw.count - off < n + 4 { break }
                if n > 0 { handleFrame(base + off, n) }
                off += n + 4
            }
            return off
        }
        guard let consumed = bad else {
            context.close(promise: nil)
            return
        }
        carry.moveReaderIndex(forwardBy: consumed)
        if carry.readableBytes == 0 { carry = ByteBuffer() }  // let NIO reuse its receive buffer
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    /// Append the pieces `a`...`d` (one frame) to `target`'s output, on whichever loop owns it:
    /// one ByteBuffer call per frame (a writeBytes per piece costs ~250 instructions of NIO each).
    @inline(__always)
    func send(_ target: Conn, _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer = Conn.none,
              _ c: UnsafeRawBufferPointer = Conn.none, _ d: UnsafeRawBufferPointer = Conn.none) {
        let total = a.count + b.count + c.count + d.count
        @inline(__always) func copy(_ into: UnsafeMutableRawBufferPointer) -> Int {
            var o = into.baseAddress!
            for piece in [a, b, c, d] where piece.count > 0 {
                o.copyMemory(from: piece.baseAddress!, byteCount: piece.count)
                o += piece.count
            }
            return total
        }
        if target.state === state {
            guard target.context != nil else { return }
            target.out.writeWithUnsafeMutableBytes(minimumWritableBytes: total, copy)
            state.markDirty(target)
        } else {
            let i = target.state.index
            state.outbox[i].bytes.writeWithUnsafeMutableBytes(minimumWritableBytes: total, copy)
            state.outbox[i].entries.append((target, total))
            state.scheduleFlush()
        }
    }
    static var none: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

    /// One frame of `n` JSON bytes at `f + 4` (f points at its length prefix).
    func handleFrame(_ f: UnsafePointer<UInt8>, _ n: Int) {
        let p = f + 4
        let e = p + n
        let top = Json.fields(p, e, "msg_type", "ttl", "msg_data")
        guard top.found >= 0, let mtv = top.v0, let mt = Json.string(mtv, e) else { return }
        if Json.equal(mt, "MESSAGE") {
            let mv = Json.fields(top.v2, e, "msg_id", "recipient")
            guard mv.found >= 0, let idv = mv.v0, let id = Json.string(idv, e) else { return }
            // ttl - 1 written into a copy of its digits (the frame itself stays read-only); checked
            // before the lookups (baseline: after; nothing is sent either way)
            var ttlAt = 0
            var ttl: (UInt64, UInt64) = (0, 0)  // the new digits, up to 16 bytes
            var ttlLen = 0
            if let tv = top.v1 {
                switch Json.ttlDec(tv, e) {
                case .drop: return
                case .keep: break
                case .edit(let digits, let width):
                    ttlAt = tv - f
                    ttl = digits
                    ttlLen = width
                }
            }
            // Forward as each recipient is found; msg_id -> sender is stored after the copies are
            // queued, which is still before any of them can be written (at the end of the tick).
            var sent = 0
            let total = n + 4
            withUnsafeBytes(of: &ttl) { newTTL in
                Json.forEachRecipient(mv.v1, e) { r, rl in
                    let key = idKey(r, rl)
                    guard let c = relay.tables.with({ t in t.nodes[key] }) else { return }
                    sent += 1
                    if ttlLen == 0 {
                        send(c, UnsafeRawBufferPointer(start: f, count: total))
                    } else {
                        send(c, UnsafeRawBufferPointer(start: f, count: ttlAt),
                             UnsafeRawBufferPointer(start: newTTL.baseAddress, count: ttlLen),
                             UnsafeRawBufferPointer(start: f + ttlAt + ttlLen, count: total - ttlAt - ttlLen))
                    }
                }
            }
            if sent > 0 {
                let key = idKey(id.0, id.1)
                relay.tables.with { t in t.msgs[key] = self }
            }
        } else if Json.equal(mt, "ACK") {
            let av = Json.fields(top.v2, e, "msg_id")
            guard av.found >= 0, let idv = av.v0, let id = Json.string(idv, e), id.1 <= 200 else { return }
            let key = idKey(id.0, id.1)
            guard let sender = relay.tables.with({ t in t.msgs.removeValue(forKey: key) }) else { return }
            // length, {"msg_type":"ACK",...,"node_id":"<relay>","msg_id":", the id, "}}
            let prefix = relay.ackPrefix
            var len = UInt32(prefix.count + id.1 + 3).bigEndian
            withUnsafeBytes(of: &len) { lb in
                prefix.withUnsafeBytes { pb in
                    send(sender, lb, pb, UnsafeRawBufferPointer(start: id.0, count: id.1), Conn.ackTail)
                }
            }
        } else if Json.equal(mt, "HELLO") {
            let nv = Json.fields(top.v2, e, "node_id")
            guard nv.found >= 0, let idv = nv.v0, let id = Json.string(idv, e) else { return }
            let key = idKey(id.0, id.1)
            let old = node
            relay.tables.with { t in
                if let old, old != key, t.nodes[old] === self { t.nodes[old] = nil }
                t.nodes[key] = self
            }
            node = key
            (relay.helloAtAccept ? relay.routingFrame : relay.helloFrame).withUnsafeBytes { send(self, $0) }
        }
    }
    static var ackTail: UnsafeRawBufferPointer { UnsafeRawBufferPointer(StaticString(#""}}"#).withUTF8Buffer { $0 }) }
}

// MARK: - minimal JSON scan (common.h's jws, jstr_end, jskip, jobj_fields, jstr_val)

enum Json {
    typealias P = UnsafePointer<UInt8>
    static let kTop = ["msg_type", "ttl", "msg_data"].map { Array($0.utf8) }
    static let kMsg = ["msg_id", "recipient"].map { Array($0.utf8) }
    static let kID = ["msg_id"].map { Array($0.utf8) }
    static let kNode = ["node_id"].map { Array($0.utf8) }

    @inline(__always) static func ws(_ p: P, _ e: P) -> P {
        var p = p
        while p < e && (p.pointee == 0x20 || p.pointee == 0x09 || p.pointee == 0x0a || p.pointee == 0x0d) { p += 1 }
        return p
    }

    /// p at an opening quote; just past the closing one, or nil.
    static func stringEnd(_ p: P, _ e: P) -> P? {
        let s = p + 1
        var q = s
        while true {
            guard let hit = memchr(q, 0x22, e - q) else { return nil }
            let h = hit.assumingMemoryBound(to: UInt8.self)
            var b = UnsafePointer(h)
            while b > s && b[-1] == 0x5c { b -= 1 }
            if (UnsafePointer(h) - b) & 1 == 0 { return UnsafePointer(h) + 1 }
            q = UnsafePointer(h) + 1
        }
    }

    /// p at any value; just past it, or nil.
    static func skip(_ p: P, _ e: P) -> P? {
        guard p < e else { return nil }
        var p = p
        let c = p.pointee
        if c == 0x22 { return stringEnd(p, e) }
        if c == 0x7b || c == 0x5b {
            var d = 0
            while p < e {
                let c = p.pointee
                if c == 0x22 {
                    guard let q = stringEnd(p, e) else { return nil }
                    p = q
                    continue
                }
                if c == 0x7b || c == 0x5b {
                    d += 1
                } else if c == 0x7d || c == 0x5d {
                    d -= 1
                    if d == 0 { return p + 1 }
                }
                p += 1
            }
            return nil
        }
        while p < e {
            let c = p.pointee
            if c == 0x2c || c == 0x7d || c == 0x5d || c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d { break }
            p += 1
        }
        return p
    }

    /// Up to three wanted keys' values (nil: absent); found = how many, -1 = malformed.
    struct Fields {
        var found = 0
        var v0: P? = nil
        var v1: P? = nil
        var v2: P? = nil
    }

    @inline(__always) static func isKey(_ ks: P, _ kl: Int, _ k: StaticString) -> Bool {
        kl == k.utf8CodeUnitCount && memcmp(ks, k.utf8Start, kl) == 0
    }

    /// One pass over the object at p (nil: none) for the keys k0, k1, k2 at this level.
    static func fields(_ p: P?, _ e: P, _ k0: StaticString, _ k1: StaticString = "", _ k2: StaticString = "")
        -> Fields
    {
        var r = Fields()
        let want = 1 + (k1.utf8CodeUnitCount > 0 ? 1 : 0) + (k2.utf8CodeUnitCount > 0 ? 1 : 0)
        guard let p0 = p else { return Fields(found: -1) }
        var p = ws(p0, e)
        guard p < e, p.pointee == 0x7b else { return Fields(found: -1) }
        p += 1
        while true {
            p = ws(p, e)
            guard p < e else { return Fields(found: -1) }
            if p.pointee == 0x7d { return r }
            guard p.pointee == 0x22, let ke = stringEnd(p, e) else { return Fields(found: -1) }
            let ks = p + 1
            let kl = ke - 1 - ks
            p = ws(ke, e)
            guard p < e, p.pointee == 0x3a else { return Fields(found: -1) }
            p = ws(p + 1, e)
            var hit = false
            if r.v0 == nil && isKey(ks, kl, k0) {
                r.v0 = p
                hit = true
            } else if r.v1 == nil && kl > 0 && isKey(ks, kl, k1) {
                r.v1 = p
                hit = true
            } else if r.v2 == nil && kl > 0 && isKey(ks, kl, k2) {
                r.v2 = p
                hit = true
            }
            if hit {
                r.found += 1
                if r.found == want { return r }
            }
            guard let ve = skip(p, e) else { return Fields(found: -1) }
            p = ws(ve, e)
            guard p < e else { return Fields(found: -1) }
            if p.pointee == 0x2c {
                p += 1
                continue
            }
            return p.pointee == 0x7d ? r : Fields(found: -1)
        }
    }

    /// v at a string value: its raw contents (start, length).
    @inline(__always) static func string(_ v: P, _ e: P) -> (P, Int)? {
        guard v < e, v.pointee == 0x22, let ve = stringEnd(v, e) else { return nil }
        return (v + 1, ve - 1 - (v + 1))
    }

    @inline(__always) static func equal(_ s: (P, Int), _ lit: StaticString) -> Bool {
        s.1 == lit.utf8CodeUnitCount && memcmp(s.0, lit.utf8Start, s.1) == 0
    }

    /// Calls body with each node id of a "recipient" value: a string, an object, or an array of
    /// either (at most 64, as the baseline).
    static func forEachRecipient(_ v: P?, _ e: P, _ body: (P, Int) -> Void) {
        guard let v, v < e else { return }
        func one(_ p: P) {
            if p.pointee == 0x22 {
                if let s = string(p, e) { body(s.0, s.1) }
            } else if p.pointee == 0x7b {
                let nv = fields(p, e, "node_id")
                if nv.found == 1, let s = string(nv.v0!, e) { body(s.0, s.1) }
            }
        }
        if v.pointee != 0x5b {
            one(v)
            return
        }
        var p = v + 1
        var count = 0
        while true {
            p = ws(p, e)
            if p >= e || p.pointee == 0x5d { break }
            if count < 64 { one(p) }
            count += 1
            guard let q = skip(p, e) else { break }
            p = ws(q, e)
            if p < e && p.pointee == 0x2c {
                p += 1
                continue
            }
            break
        }
    }

    enum TTL { case drop, keep, edit((UInt64, UInt64), Int) }

    /// ttl - 1 at the same width (padded with spaces), as baseline's ttl_dec.
    static func ttlDec(_ v: P, _ e: P) -> TTL {
        if v < e && v.pointee == 0x2d { return .drop }
        var q = v
        var x = 0
        while q < e && q.pointee >= 0x30 && q.pointee <= 0x39 && q - v < 12 {
            x = x * 10 + Int(q.pointee - 0x30)
            q += 1
        }
        if q == v { return .keep }
        if x <= 0 { return .drop }
        x -= 1
        let w = q - v
        var digits: (UInt64, UInt64) = (0x2020_2020_2020_2020, 0x2020_2020_2020_2020)
        var nd = 1
        var t = x / 10
        while t > 0 {
            nd += 1
            t /= 10
        }
        withUnsafeMutableBytes(of: &digits) { d in
            for i in stride(from: nd - 1, through: 0, by: -1) {
                d[i] = UInt8(0x30 + x % 10)
                x /= 10
            }
        }
        return .edit(digits, w)
    }
}

// MARK: - main

func say(_ line: String) {
    var line = line
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

var port = 7000
var bindHost = "127.0.0.1"
var threads = System.coreCount
var quiet = false
var helloAtAccept = false
var flushAtReadComplete = false
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    switch a {
    case "--port": port = Int(args.next() ?? "") ?? -1
    case "--bind": bindHost = args.next() ?? ""
    case "--threads": threads = Int(args.next() ?? "") ?? 0
    case "--quiet": quiet = true
    case "--hello-at-accept": helloAtAccept = true
    case "--flush-at-read-complete": flushAtReadComplete = true
    default:
        say("usage: nio-floor-relay [--port P] [--bind ADDR] [--threads N (default: cores)] [--quiet] [--hello-at-accept] [--flush-at-read-complete]\n")
        exit(2)
    }
}
guard threads >= 1, (1...65535).contains(port) else {
    say("nio-floor-relay: bad --threads or --port\n")
    exit(2)
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
var loopStates: [LoopState] = []
for (i, loop) in group.makeIterator().enumerated() {
    loopStates.append(LoopState(loop: loop, index: i, loops: threads))
}
for s in loopStates { s.peers = loopStates }
let states = loopStates
let relay = Relay(locked: threads > 1, helloAtAccept: helloAtAccept, flushAtReadComplete: flushAtReadComplete)

// One listening socket per loop with SO_REUSEPORT, as the baseline's workers and the relay listen:
// each loop accepts its own connections (one listener would register half of them on another loop).
// No child channel option: NIO turns Nagle off on the listener and Linux passes it to every
// accepted socket (a `childChannelOption` costs a chain of futures per connection).
let servers = try states.map { state in
    try ServerBootstrap(group: state.loop)
        .serverChannelOption(.backlog, value: 4096)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .serverChannelOption(.socketOption(NIOBSDSocket.Option(rawValue: SO_REUSEPORT)), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(Conn(relay: relay, state: state))
            }
        }
        .bind(host: bindHost, port: port).wait()
}
if !quiet {
    say("nio-floor-relay: listening on \(bindHost):\(port) threads=\(threads) node_id=\(String(decoding: relay.relayID, as: UTF8.self))\n")
}

// SIGTERM/SIGINT: exit normally (callgrind writes its totals; run-compare stops us with TERM).
// A global function, so that the handlers are not main-actor closures run on a dispatch queue.
func waitForTermination() {
    signal(SIGTERM, SIG_IGN)
    signal(SIGINT, SIG_IGN)
    let stop = DispatchSemaphore(value: 0)
    let sources = [SIGTERM, SIGINT].map { sig -> DispatchSourceSignal in
        let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        s.setEventHandler { stop.signal() }
        s.resume()
        return s
    }
    stop.wait()
    sources.forEach { $0.cancel() }
}
waitForTermination()
for server in servers { try? server.close().wait() }
try? group.syncShutdownGracefully()
exit(0)
