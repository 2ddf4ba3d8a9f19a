import Foundation
import Logging
import NIOCore
import NIOEmbedded
import PTPProtocol
import RelayConfig
import RelayStore
import XCTest

@testable import RelayCore

// MARK: Deterministic randomness


// MARK: Topologies

/// An undirected relay link; `a < b`, and `a` is the relay that dials.
struct SimEdge: Hashable, Comparable, CustomStringConvertible {
    let a: Int
    let b: Int

    init(_ x: Int, _ y: Int) {
        precondition(x != y)
        a = min(x, y)
        b = max(x, y)
    }

    func touches(_ relay: Int) -> Bool { a == relay || b == relay }
    func other(_ relay: Int) -> Int { a == relay ? b : a }

    static func < (lhs: SimEdge, rhs: SimEdge) -> Bool { (lhs.a, lhs.b) < (rhs.a, rhs.b) }
    var description: String { "r\(a)-r\(b)" }
}

enum SimTopology {
    static func triangle() -> [SimEdge] { [SimEdge(0, 1), SimEdge(1, 2), SimEdge(0, 2)] }

    static func ring(_ count: Int) -> [SimEdge] { (0..<count).map { SimEdge($0, ($0 + 1) % count) } }

    /// A random connected graph: a random tree (each relay links to a random earlier one), then
    /// random extra links until there are `links`.
    static func random(relays: Int, links: Int, rng: inout SeededRandom) -> [SimEdge] {
        var edges = Set<SimEdge>()
        for relay in 1..<relays { edges.insert(SimEdge(relay, Int.random(in: 0..<relay, using: &rng))) }
        let most = relays * (relays - 1) / 2
        while edges.count < min(links, most) {
            let x = Int.random(in: 0..<relays, using: &rng)
            let y = Int.random(in: 0..<relays, using: &rng)
            if x != y { edges.insert(SimEdge(x, y)) }
        }
        return edges.sorted()
    }
}

// MARK: Traffic on relay links

/// Frames and bytes that crossed relay-to-relay links, by verb.
struct SimTraffic {
    var frames: [String: Int] = [:]
    var bytes: [String: Int] = [:]

    mutating func add(_ verb: String, bytes count: Int) {
        frames[verb, default: 0] += 1
        bytes[verb, default: 0] += count
    }

    func frames(_ verb: String) -> Int { frames[verb] ?? 0 }
    func bytes(_ verb: String) -> Int { bytes[verb] ?? 0 }

    static func - (lhs: SimTraffic, rhs: SimTraffic) -> SimTraffic {
        var result = SimTraffic()
        for (verb, count) in lhs.frames { result.frames[verb] = count - rhs.frames(verb) }
        for (verb, count) in lhs.bytes { result.bytes[verb] = count - rhs.bytes(verb) }
        return result
    }
}

// MARK: The simulation

/// Many relays (`TestRelay`, one shard each, on their own EmbeddedEventLoops) in one process,
/// wired into a mesh by pairs of EmbeddedChannels whose bytes a pump carries from one side to the
/// other. Time is virtual: `step()` advances every relay's loop and runs what the relay's timers
/// would (mesh batches every eighth of `routing.interval`, client ROUTING deltas every interval,
/// stored retries every second). Clients are connections that speak as nodes and ACK every
/// MESSAGE they get; everything they receive is recorded.
final class MeshRelaySimulation {
    final class SimRelay {
        let index: Int
        let id: GUID
        let name: String
        var relay: TestRelay?
        /// The store's rows, kept across a failure as SQLite keeps them across `kill -9`.
        var durable: [NewMessage] = []
        var isUp: Bool { relay != nil }

        init(index: Int, id: GUID) {
            self.index = index
            self.id = id
            self.name = "r\(index)"
        }
    }

    final class SimClient {
        let index: Int
        let id: GUID
        let home: Int
        var peer: Peer?
        /// Bound (its HELLO was taken) and not closed since.
        var online = false
        var inbox = ByteBuffer()
        /// MESSAGE ids received, with how many times.
        var received: [GUID: Int] = [:]
        /// Flood ids received, with how many times.
        var floods: [GUID: Int] = [:]
        /// The ROUTING view the relay gave it: node → ttl.
        var view: [GUID: Int] = [:]
        var idText: String { id.description }
        var name: String { "c\(index)" }

        init(index: Int, id: GUID, home: Int) {
            self.index = index
            self.id = id
            self.home = home
        }
    }

    final class SimLink {
        let edge: SimEdge
        /// On relay `edge.a`: its ConnectionHandler dialed `edge.b`.
        let dialing: EmbeddedChannel
        /// On relay `edge.b`: the accepting side, which says HELLO first.
        let accepting: EmbeddedChannel

        init(edge: SimEdge, dialing: EmbeddedChannel, accepting: EmbeddedChannel) {
            self.edge = edge
            self.dialing = dialing
            self.accepting = accepting
        }

        func channel(of relay: Int) -> EmbeddedChannel { relay == edge.a ? dialing : accepting }
    }

    /// One unicast MESSAGE and what became of it, per recipient.
    struct Unicast {
        var from: Int
        var to: [Int]
        var acks = 0
        /// Recipients a NACK with `stored: true` named (all of them when it named none).
        var stored: Set<Int> = []
        /// NACKs that did not keep the message, as `reason`.
        var refused: [String] = []
        var sentAt = 0.0
    }

    /// How one change went.
    struct ChangeResult {
        var label: String
        /// Virtual seconds from the change until every relay's table agreed with the live graph
        /// (and stayed so); nil when it never did.
        var convergence: Double?
        var clientViewsConvergence: Double?
        var routingFrames: Int
        var routingBytes: Int
    }

    struct FloodResult {
        var transmissions: Int
        var links: Int
        var reached: Int
        var expected: Int
        var violations: [String]
    }

    let name: String
    let interval: Double
    /// Steps per `routing.interval`: 5 (the mesh timer's tick, every relay in phase), or 20 when
    /// the relays' timers are out of phase (each relay ticks every 4 steps at its own offset).
    let stepsPerInterval: Int
    /// Each relay's timer offset, in steps (all 0 when in phase).
    private var phase: [Int] = []
    /// The relay's mesh tick: every eighth of `routing.interval` (RelayShard+Timers).
    static let ticksPerInterval = 8
    var timersInPhase: Bool { stepsPerInterval == Self.ticksPerInterval }
    let meshKey = "mesh-simulation-key-0123456789abcdef"
    let routingToClients: Bool
    /// Which clients' ROUTING views are parsed and checked (all of them costs time at 1,000).
    let watchesView: (Int) -> Bool
    var rng: SeededRandom

    private(set) var relays: [SimRelay] = []
    private(set) var clients: [SimClient] = []
    /// The configured topology; `cut` links are down on purpose.
    private(set) var edges: [SimEdge]
    private(set) var cut: Set<SimEdge> = []
    private(set) var stalled: Set<SimEdge> = []
    private(set) var links: [SimEdge: SimLink] = [:]
    private var nodeIndex: [GUID: Int] = [:]

    private(set) var steps = 0
    var time: Double { Double(steps) * interval / Double(stepsPerInterval) }
    private var deadline: NIODeadline { .uptimeNanoseconds(UInt64(steps) * UInt64(interval * 1e9) / UInt64(stepsPerInterval)) }

    private(set) var traffic = SimTraffic()
    /// Moves whenever a table or a watched view can have changed (ROUTING crossed a link or
    /// reached a watched client, a link or a relay went up or down, a client came or went): a
    /// check at the same generation would find the same.
    private var generation = 0
    private var lastCheck: (generation: Int, result: RouteCheck)?
    private(set) var unicasts: [GUID: Unicast] = [:]
    private(set) var unicastOrder: [GUID] = []
    /// Anything the harness saw that no rule allows, in words.
    private(set) var problems: [String] = []
    /// Changes after which routes converged only once a full-table refresh was forced.
    private(set) var refreshRescues: [String] = []
    /// Prints every check of `settle` (for a person reading a run).
    var verbose = false
    /// Prints every ROUTING frame crossing a link as `name:ttl:seq` entries (names, not ids).
    var traceRouting = false
    /// Nodes whose next hops form a loop now, and since when.
    private var loopSince: [GUID: Double] = [:]
    private(set) var longestLoop: Double = 0
    private(set) var longestLoopNode: String?

    init(
        name: String, relays relayCount: Int, clientsPerRelay: Int, edges: [SimEdge], interval: Double = 0.25,
        routingToClients: Bool = true, watchesView: @escaping (Int) -> Bool = { _ in true }, timersInPhase: Bool = true,
        seed: UInt64
    ) {
        self.name = name
        self.interval = interval
        stepsPerInterval = timersInPhase ? Self.ticksPerInterval : 5 * Self.ticksPerInterval
        self.edges = edges
        self.routingToClients = routingToClients
        self.watchesView = watchesView
        rng = SeededRandom(seed: seed)
        for index in 0..<relayCount {
            let relay = SimRelay(index: index, id: GUID.random(using: &rng))
            relays.append(relay)
            phase.append(timersInPhase ? 0 : Int.random(in: 0..<stepsPerInterval, using: &rng))
            nodeIndex[relay.id] = index
        }
        for home in 0..<relayCount {
            for _ in 0..<clientsPerRelay {
                let client = SimClient(index: clients.count, id: GUID.random(using: &rng), home: home)
                clients.append(client)
                nodeIndex[client.id] = relayCount + client.index
            }
        }
    }

    var relayCount: Int { relays.count }

    /// The relay (index) the mesh of relay `at` forwards to for `client`; nil when it has none.
    func nextHop(at relay: Int, for client: SimClient) -> Int? {
        relays[relay].relay?.context.mesh.nextHop(for: client.id).flatMap { nodeIndex[$0.relay] }
    }
    var liveLinks: Int { links.count }

    // MARK: Starting, failing and restarting relays

    /// Starts every relay, connects every client to its home relay, then makes every link at once.
    func start(connecting: (SimClient) -> Bool = { _ in true }) {
        for relay in relays { boot(relay) }
        for client in clients where connecting(client) { connect(client) }
        pump()
        for edge in edges { makeLink(edge) }
        pump()
    }

    private func boot(_ sim: SimRelay) {
        let key = meshKey
        let interval = interval
        let toClients = routingToClients
        let relay = TestRelay { configuration in
            configuration.relay.nodeID = sim.id.description
            configuration.relay.name = sim.name
            configuration.mesh.key = key
            configuration.routing.interval = interval
            configuration.routing.toClients = toClients
        }
        // Warnings are kept (they are checked); the debug lines of thousands of frames are not.
        for shard in relay.shards { shard.logger.logLevel = .info }
        relay.loop.advanceTime(to: deadline)
        if !sim.durable.isEmpty {
            relay.offline.submit(.insert(sim.durable) { _ in })
            sim.durable = []
        }
        sim.relay = relay
    }

    /// A client says HELLO to its home relay (which must be up).
    func connect(_ client: SimClient) {
        guard let relay = relays[client.home].relay else { return }
        let peer = relay.connect(label: client.name, ip: "192.0.2.\(client.home + 1)")
        client.peer = peer
        client.online = true
        generation += 1
        client.view = [:]
        client.inbox.clear()
        peer.send(Frames.hello(client.idText, name: client.name))
    }

    /// The client closes its connection.
    func disconnect(_ client: SimClient) {
        guard let peer = client.peer else { return }
        client.peer = nil
        client.online = false
        generation += 1
        peer.close()
        pump()
    }

    /// A stalled link carries nothing until it is released (a congested or slow TCP connection).
    func stall(_ edge: SimEdge) { stalled.insert(edge) }

    func release(_ edge: SimEdge) {
        stalled.remove(edge)
        pump()
    }

    /// A relay link as a TCP connection would be: the dialing side on relay `edge.a` (the
    /// ConnectionHandler of a `mesh.peers` dial), the accepting side on `edge.b`.
    private func makeLink(_ edge: SimEdge) {
        guard let dialer = relays[edge.a].relay, let acceptor = relays[edge.b].relay, links[edge] == nil else { return }
        func channel(on relay: TestRelay, dialedPeer: String?, remote: Int) -> EmbeddedChannel {
            let handlers: [ChannelHandler] = [
                ConnectionHandler(
                    shard: relay.shard, dialedPeer: dialedPeer, maxFrameBytes: relay.configuration.limits.maxFrameBytes,
                    shardSetsCap: false)
            ]
            let channel = EmbeddedChannel(handlers: handlers, loop: relay.loop)
            do {
                let address = try SocketAddress(ipAddress: "198.51.100.\(remote + 1)", port: 9001)
                channel.remoteAddress = address
                try channel.connect(to: address).wait()
            } catch {
                problems.append("\(edge): connect failed: \(error)")
            }
            return channel
        }
        let accepting = channel(on: acceptor, dialedPeer: nil, remote: edge.a)
        let dialing = channel(on: dialer, dialedPeer: "sim:\(relays[edge.b].name)", remote: edge.b)
        links[edge] = SimLink(edge: edge, dialing: dialing, accepting: accepting)
        generation += 1
    }

    /// Closes a link on both sides (what was in flight is lost).
    private func closeLink(_ edge: SimEdge, failing: Int? = nil) {
        guard let link = links.removeValue(forKey: edge) else { return }
        generation += 1
        // The side of a relay that keeps running hears the close first; a failed relay's side
        // goes last and whatever it writes then is lost with it.
        let order = failing == edge.a ? [link.accepting, link.dialing] : [link.dialing, link.accepting]
        for channel in order {
            while let _ = try? channel.readOutbound(as: ByteBuffer.self) {}
            channel.close(promise: nil)
        }
        _ = try? link.dialing.finish(acceptAlreadyClosed: true)
        _ = try? link.accepting.finish(acceptAlreadyClosed: true)
    }

    func cutLink(_ edge: SimEdge) {
        cut.insert(edge)
        closeLink(edge)
    }

    func restoreLink(_ edge: SimEdge) {
        cut.remove(edge)
        if relays[edge.a].isUp, relays[edge.b].isUp { makeLink(edge) }
        pump()
    }

    /// The relay crashes: its links drop, its clients' connections drop, its store survives.
    func failRelay(_ index: Int) {
        let sim = relays[index]
        guard let relay = sim.relay else { return }
        for edge in links.keys.sorted() where edge.touches(index) { closeLink(edge, failing: index) }
        for client in clients where client.home == index {
            client.online = false
            if let peer = client.peer {
                while let _ = try? peer.channel.readOutbound(as: ByteBuffer.self) {}
                peer.close()
            }
            client.peer = nil
        }
        relay.loop.run()
        sim.durable = relay.offline.messages.map(\.message)
        relay.shutdown()
        sim.relay = nil
        generation += 1
    }

    /// A fresh relay with the same node id (and the old store) comes back: its clients
    /// reconnect to it, then its links are made again.
    func reviveRelay(_ index: Int) {
        let sim = relays[index]
        guard !sim.isUp else { return }
        boot(sim)
        for client in clients where client.home == index { connect(client) }
        pump()
        for edge in edges where edge.touches(index) && !cut.contains(edge) && relays[edge.other(index)].isUp {
            makeLink(edge)
        }
        // The peering proofs: a link is a link once they are done (a flood sent before the proof
        // does not cross it, rightly).
        pump()
    }

    func shutdown() {
        for edge in links.keys.sorted() { closeLink(edge) }
        for sim in relays {
            sim.relay?.shutdown()
            sim.relay = nil
        }
    }

    // MARK: Moving bytes

    /// Carries bytes across every link and to every client until nothing moves; clients ACK
    /// every MESSAGE. Every frame crossing a link is counted by verb.
    func pump() {
        var rounds = 0
        var moved = true
        while moved {
            moved = false
            rounds += 1
            if rounds > 10_000 {
                problems.append("pump did not settle")
                return
            }
            for sim in relays { sim.relay?.loop.run() }
            for edge in links.keys.sorted() where !stalled.contains(edge) {
                guard let link = links[edge] else { continue }
                if transfer(link.dialing, to: link.accepting, on: edge) { moved = true }
                if transfer(link.accepting, to: link.dialing, on: edge) { moved = true }
                if !link.dialing.isActive || !link.accepting.isActive {
                    problems.append("t=\(time): relay closed link \(edge)")
                    closeLink(edge)
                    moved = true
                }
            }
            for client in clients where client.peer != nil {
                if drain(client) { moved = true }
            }
        }
    }

    private func transfer(_ from: EmbeddedChannel, to: EmbeddedChannel, on edge: SimEdge) -> Bool {
        var moved = false
        while let buffer = try? from.readOutbound(as: ByteBuffer.self) {
            moved = true
            count(buffer, on: edge)
            guard to.isActive else { continue }
            do {
                try to.writeInbound(buffer)
            } catch {
                problems.append("\(edge): writeInbound: \(error)")
            }
        }
        return moved
    }

    private func count(_ buffer: ByteBuffer, on edge: SimEdge) {
        var index = buffer.readerIndex
        let end = buffer.writerIndex
        while end - index >= 4 {
            let length = Int(buffer.getInteger(at: index, as: UInt32.self)!)
            guard end - index - 4 >= length else {
                problems.append("\(edge): a write ends inside a frame")
                return
            }
            let verb = length == 0 ? "keepalive" : Self.verb(buffer, at: index + 4, length: length)
            traffic.add(verb, bytes: 4 + length)
            if verb == "ROUTING" { generation += 1 }
            if traceRouting, verb == "ROUTING", let text = buffer.getString(at: index + 4, length: length) {
                print("    t=\(time) \(edge) ROUTING \(text.count) bytes: \(Self.summarize(text))")
            }
            index += 4 + length
        }
        if index != end { problems.append("\(edge): a write ends inside a frame") }
    }

    /// A ROUTING frame in short: the sender's name and each entry as `name:ttl:seq`.
    static func summarize(_ text: String) -> String {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any],
            let data = object["msg_data"] as? [String: Any]
        else { return text }
        let from = (data["node_id"] as? String)?.split(separator: "@").first ?? "?"
        let nodes = (data["nodes"] as? [[String: Any]] ?? []).map { entry in
            "\((entry["node_id"] as? String)?.split(separator: "@").first ?? "?"):\(entry["ttl"] ?? "?"):\(entry["seq"] ?? "-")"
        }
        return "from \(from) \(nodes.joined(separator: " "))"
    }

    /// The verb of a frame the relay wrote (`{"msg_type":"VERB",…`: the head is exact).
    private static func verb(_ buffer: ByteBuffer, at index: Int, length: Int) -> String {
        let prefix = 13  // {"msg_type":"
        guard length > prefix, let bytes = buffer.getBytes(at: index + prefix, length: min(length - prefix, 20)) else { return "?" }
        return String(decoding: bytes.prefix { $0 != UInt8(ascii: "\"") }, as: UTF8.self)
    }

    private func drain(_ client: SimClient) -> Bool {
        guard let peer = client.peer else { return false }
        var moved = false
        while var buffer = try? peer.channel.readOutbound(as: ByteBuffer.self) {
            moved = true
            client.inbox.writeBuffer(&buffer)
        }
        while client.inbox.readableBytes >= 4 {
            let length = Int(client.inbox.getInteger(at: client.inbox.readerIndex, as: UInt32.self)!)
            guard client.inbox.readableBytes >= 4 + length else { break }
            client.inbox.moveReaderIndex(forwardBy: 4)
            let bytes = client.inbox.readBytes(length: length)!
            if length > 0 { handle(bytes, at: client) }
        }
        client.inbox.discardReadBytes()
        if !peer.channel.isActive {
            problems.append("t=\(time): relay r\(client.home) closed client \(client.name)")
            client.peer = nil
            client.online = false
            generation += 1
        }
        return moved
    }

    private func handle(_ bytes: [UInt8], at client: SimClient) {
        let verb = bytes.count > 13 ? String(decoding: bytes[13...].prefix(20).prefix { $0 != UInt8(ascii: "\"") }, as: UTF8.self) : "?"
        if verb == "ROUTING" && !watchesView(client.index) { return }
        if verb == "HELLO" { return }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any],
            let data = object["msg_data"] as? [String: Any]
        else {
            problems.append("\(client.name): unreadable frame")
            return
        }
        let dataID = (data["msg_id"] as? String).flatMap(GUID.init)
        switch verb {
        case "MESSAGE":
            guard let id = dataID else { return problems.append("\(client.name): MESSAGE without msg_id") }
            client.received[id, default: 0] += 1
            client.peer?.send(Frames.ack(id.description))
        case "JOIN":
            guard let id = dataID else { return problems.append("\(client.name): JOIN without msg_id") }
            client.floods[id, default: 0] += 1
        case "ACK":
            guard let id = dataID, unicasts[id] != nil else { return problems.append("\(client.name): unknown ACK") }
            unicasts[id]!.acks += 1
        case "NACK":
            guard let id = dataID, var unicast = unicasts[id] else { return problems.append("\(client.name): unknown NACK") }
            let named = ((data["recipient"] as? [[String: Any]]) ?? []).compactMap {
                ($0["node_id"] as? String).flatMap(GUID.init).flatMap { nodeIndex[$0] }.map { $0 - relayCount }
            }
            if data["stored"] as? Bool == true {
                unicast.stored.formUnion(named.isEmpty ? unicast.to : named)
            } else {
                unicast.refused.append((data["reason"] as? String) ?? "?")
            }
            unicasts[id] = unicast
        case "ROUTING":
            generation += 1
            for entry in (data["nodes"] as? [[String: Any]]) ?? [] {
                guard let text = entry["node_id"] as? String, let id = NodeAddress(text)?.id,
                    let ttl = (entry["ttl"] as? NSNumber)?.intValue
                else { continue }
                client.view[id] = ttl >= 32 ? nil : ttl
            }
        default:
            break
        }
    }

    // MARK: Time

    /// One step passes (an eighth of `routing.interval`, or a fortieth when the timers are out of
    /// phase): every relay's loop advances; on each relay's mesh tick (every eighth of the
    /// interval, as its timer) the batches held back by the interval go; once per interval its
    /// clients get their ROUTING delta; stored messages are retried once a second; the pump runs.
    func step() {
        steps += 1
        let now = deadline
        let tick = stepsPerInterval / Self.ticksPerInterval
        for sim in relays { sim.relay?.loop.advanceTime(to: now) }
        for sim in relays where (steps + phase[sim.index]) % tick == 0 {
            guard let shard = sim.relay?.shard else { continue }
            shard.flushMesh()
            shard.flushAll()
        }
        for sim in relays where (steps + phase[sim.index]) % stepsPerInterval == 0 {
            sim.relay?.shard.sendRoutingDelta()
        }
        if steps % (4 * stepsPerInterval) == 0 { retryStored() }
        pump()
    }

    func retryStored() {
        for sim in relays {
            guard let relay = sim.relay else { continue }
            // Retry times are on the wall clock, which the simulation does not wait for.
            relay.offline.makeAllDue()
            relay.shard.retryStored()
            relay.shard.flushAll()
        }
    }

    func advance(intervals: Double) {
        let count = Int((intervals * Double(stepsPerInterval)).rounded())
        for _ in 0..<count { step() }
    }

    // MARK: The live graph

    /// Live neighbours of every relay.
    func adjacency() -> [[Int]] {
        var adjacent = [[Int]](repeating: [], count: relayCount)
        for edge in links.keys {
            adjacent[edge.a].append(edge.b)
            adjacent[edge.b].append(edge.a)
        }
        return adjacent
    }

    /// Hops between live relays (-1: not connected), by BFS over the live links.
    func distances() -> [[Int]] {
        let adjacent = adjacency()
        var result = [[Int]](repeating: [Int](repeating: -1, count: relayCount), count: relayCount)
        for source in relays.indices where relays[source].isUp {
            var queue = [source]
            result[source][source] = 0
            var head = 0
            while head < queue.count {
                let relay = queue[head]
                head += 1
                for next in adjacent[relay] where result[source][next] < 0 {
                    result[source][next] = result[source][relay] + 1
                    queue.append(next)
                }
            }
        }
        return result
    }

    // MARK: Checking routes

    struct RouteCheck {
        var tablesAgree = true
        var viewsAgree = true
        var mismatches = 0
        var firstMismatch: String?
        /// Nodes for which following next hops from some relay runs into a cycle.
        var loops: [GUID] = []
    }

    /// Every live relay's table against BFS over the live graph: each live node it can reach has
    /// a route of the shortest length through a neighbour on a shortest path, and nothing else is
    /// routed; then next hops are followed from every relay for every node to find cycles; then
    /// the ROUTING views of the watched clients.
    func checkRoutes() -> RouteCheck {
        if let lastCheck, lastCheck.generation == generation { return lastCheck.result }
        let result = computeCheck()
        lastCheck = (generation, result)
        return result
    }

    private func computeCheck() -> RouteCheck {
        var check = RouteCheck()
        let dist = distances()
        let relayCount = self.relayCount
        let nodeCount = relayCount + clients.count
        var onlineAt = [Int](repeating: 0, count: relayCount)
        for client in clients where client.online { onlineAt[client.home] += 1 }
        var next = [Int32](repeating: -1, count: nodeCount * relayCount)
        func mismatch(_ text: @autoclosure () -> String) {
            check.tablesAgree = false
            check.mismatches += 1
            if check.firstMismatch == nil { check.firstMismatch = text() }
        }
        for sim in relays {
            guard let relay = sim.relay else { continue }
            let r = sim.index
            var expected = 0
            for h in 0..<relayCount where dist[r][h] >= 0 { expected += onlineAt[h] + (h == r ? 0 : 1) }
            var good = 0
            for route in relay.context.mesh.routes() {
                guard let n = nodeIndex[route.node.id] else {
                    mismatch("r\(r) routes unknown node \(route.node)")
                    continue
                }
                if case .peer(let peerID) = route.nextHop, let p = nodeIndex[peerID], p < relayCount {
                    next[n * relayCount + r] = Int32(p)
                }
                let home: Int
                let extra: Int
                if n < relayCount {
                    home = n
                    extra = 0
                } else {
                    let client = clients[n - relayCount]
                    guard client.online else {
                        mismatch("r\(r) routes offline \(client.name) (\(route.nextHop), ttl \(route.ttl))")
                        continue
                    }
                    home = client.home
                    extra = 1
                }
                let d = dist[r][home]
                guard d >= 0 else {
                    mismatch("r\(r) routes unreachable node \(Self.label(n, relayCount)) via \(route.nextHop)")
                    continue
                }
                switch route.nextHop {
                case .local:
                    guard home == r, extra == 1, route.ttl == 1 else {
                        mismatch("r\(r) has \(Self.label(n, relayCount)) as local")
                        continue
                    }
                case .peer(let peerID):
                    guard let p = nodeIndex[peerID], p < relayCount, home != r, links[SimEdge(r, p)] != nil,
                        dist[p][home] == d - 1, route.ttl == d + extra
                    else {
                        mismatch(
                            "r\(r) routes \(Self.label(n, relayCount)) via \(nodeIndex[peerID].map { Self.label($0, relayCount) } ?? "?") ttl \(route.ttl), shortest \(d + extra)"
                        )
                        continue
                    }
                }
                good += 1
            }
            if good != expected {
                mismatch("r\(r) has \(good) right routes of \(expected)")
            }
        }
        // Loops: per node, next hops form a functional graph over the relays.
        var state = [UInt8](repeating: 0, count: relayCount)
        var path: [Int] = []
        for n in 0..<nodeCount {
            let base = n * relayCount
            for i in 0..<relayCount { state[i] = 0 }
            var looped = false
            for start in 0..<relayCount where state[start] == 0 && !looped {
                path.removeAll(keepingCapacity: true)
                var x = start
                while x >= 0 && state[x] == 0 {
                    state[x] = 1
                    path.append(x)
                    x = Int(next[base + x])
                }
                if x >= 0 && state[x] == 1 { looped = true }
                for p in path { state[p] = 2 }
            }
            if looped { check.loops.append(n < relayCount ? relays[n].id : clients[n - relayCount].id) }
        }
        // Client views (`routing.to_clients`: the table as its relay sees it, never its own entry).
        if routingToClients {
            for client in clients where client.online && watchesView(client.index) {
                let h = client.home
                var expected = 0
                var good = 0
                for sim in relays where sim.isUp && sim.index != h && dist[h][sim.index] >= 0 {
                    expected += 1
                    if client.view[sim.id] == dist[h][sim.index] { good += 1 }
                }
                for other in clients where other.online && other.index != client.index && dist[h][other.home] >= 0 {
                    expected += 1
                    if client.view[other.id] == dist[h][other.home] + 1 { good += 1 }
                }
                if good != expected || client.view.count != expected {
                    check.viewsAgree = false
                    if check.firstMismatch == nil {
                        check.firstMismatch = "\(client.name)'s view: \(good) right of \(expected), \(client.view.count) listed"
                    }
                }
            }
        }
        return check
    }

    private static func label(_ node: Int, _ relayCount: Int) -> String {
        node < relayCount ? "r\(node)" : "c\(node - relayCount)"
    }

    /// Loops seen now: how long each has lasted (the longest is kept).
    private func track(_ check: RouteCheck) {
        let now = time
        var current: [GUID: Double] = [:]
        for node in check.loops {
            let since = loopSince[node] ?? now
            current[node] = since
            // Seen at every check since `since` (one check counts a tick of the interval).
            let lasted = now - since + interval / Double(Self.ticksPerInterval)
            if lasted > longestLoop {
                longestLoop = lasted
                longestLoopNode = nodeIndex[node].map { Self.label($0, relayCount) }
            }
        }
        loopSince = current
    }

    /// After a change made at `start` (with `before` the link traffic then): pumps, then steps time until every relay's table agrees with the live
    /// graph (and the watched clients' views too), and stays so for `quiet` intervals. Loops are
    /// tracked at every step. Returns how long it took and the ROUTING it cost.
    @discardableResult
    func settle(_ label: String, since start: Double, before: SimTraffic, limit: Double = 16, quiet: Double = 2) -> ChangeResult {
        pump()
        var tablesAt: Double?
        var viewsAt: Double?
        var last = RouteCheck()
        while true {
            // Every tick of the interval (every step when the timers are in phase).
            if steps % (stepsPerInterval / Self.ticksPerInterval) != 0 {
                step()
                continue
            }
            last = checkRoutes()
            track(last)
            if verbose { print("  t=\(time) \(label): \(last.mismatches) mismatches, loops \(last.loops.count): \(last.firstMismatch ?? "-")") }
            if last.tablesAgree { tablesAt = tablesAt ?? time } else { tablesAt = nil }
            if last.tablesAgree && last.viewsAgree { viewsAt = viewsAt ?? time } else { viewsAt = nil }
            if let viewsAt, time - viewsAt >= quiet * interval - 1e-9 { break }
            if time - start >= limit * interval { break }
            step()
        }
        let cost = traffic - before
        if viewsAt == nil {
            problems.append("\(label): no convergence within \(limit) intervals: \(last.firstMismatch ?? "?") (\(last.mismatches) mismatches)")
            // What `routing.refresh` (every 60 s) would do in the end: the whole table to every
            // peer. The scenario goes on from a converged mesh; this change counts as never.
            for sim in relays {
                sim.relay?.shard.refreshMesh()
                sim.relay?.shard.flushAll()
            }
            let rescue = settle("\(label), after a full-table refresh", since: time, before: traffic, limit: limit, quiet: quiet)
            refreshRescues.append("\(label): converged \(rescue.convergence.map { "\($0)" } ?? "never") intervals after a refresh")
        }
        return ChangeResult(
            label: label, convergence: tablesAt.map { ($0 - start) / interval },
            clientViewsConvergence: routingToClients ? viewsAt.map { ($0 - start) / interval } : nil,
            routingFrames: cost.frames("ROUTING"), routingBytes: cost.bytes("ROUTING"))
    }

    // MARK: Traffic

    var onlineClients: [SimClient] { clients.filter(\.online) }

    /// Unicast MESSAGEs from random online clients to random other clients (online or not);
    /// about one in four goes to three recipients.
    func sendUnicasts(_ count: Int) {
        let senders = onlineClients
        guard !senders.isEmpty, clients.count > 3 else { return }
        for _ in 0..<count {
            let sender = senders[Int.random(in: 0..<senders.count, using: &rng)]
            let width = Int.random(in: 0..<4, using: &rng) == 0 ? 3 : 1
            var recipients: [Int] = []
            while recipients.count < width {
                let candidate = Int.random(in: 0..<clients.count, using: &rng)
                if candidate != sender.index && !recipients.contains(candidate) { recipients.append(candidate) }
            }
            sendMessage(from: sender, to: recipients)
        }
        pump()
    }

    /// One MESSAGE from `sender` to the clients `recipients` (not pumped yet); its id.
    @discardableResult
    func sendMessage(from sender: SimClient, to recipients: [Int]) -> GUID {
        let id = GUID.random(using: &rng)
        unicasts[id] = Unicast(from: sender.index, to: recipients, sentAt: time)
        unicastOrder.append(id)
        sender.peer?.send(Frames.message(from: sender.idText, to: recipients.map { clients[$0].idText }, id: id.description))
        return id
    }

    /// A JOIN from a random online client: every online client its relay can reach gets it once,
    /// the others never, and it crosses each live link at most once each way.
    func flood() -> FloodResult? {
        let senders = onlineClients
        guard !senders.isEmpty else { return nil }
        let origin = senders[Int.random(in: 0..<senders.count, using: &rng)]
        let id = GUID.random(using: &rng)
        let before = traffic.frames("JOIN")
        let linkCount = links.count
        let dist = distances()
        origin.peer?.send(Frames.join(from: origin.idText, dataID: id.description))
        pump()
        var result = FloodResult(transmissions: traffic.frames("JOIN") - before, links: linkCount, reached: 0, expected: 0, violations: [])
        for client in clients {
            let got = client.floods[id] ?? 0
            let expected = client.online && client.index != origin.index && dist[origin.home][client.home] >= 0 ? 1 : 0
            result.expected += expected
            if got == 1 { result.reached += 1 }
            if got != expected {
                result.violations.append("flood from \(origin.name): \(client.name) got it \(got) times, expected \(expected)")
            }
        }
        if result.transmissions > 2 * linkCount {
            result.violations.append("flood from \(origin.name): \(result.transmissions) transmissions on \(linkCount) links")
        }
        return result
    }

    // MARK: Unicast outcomes

    struct UnicastTally {
        var messages = 0
        /// (message, recipient) pairs.
        var deliveries = 0
        /// Pairs delivered exactly once.
        var deliveredOnce = 0
        /// Pairs a `stored: true` NACK covered.
        var stored = 0
        /// Pairs that were stored and were delivered later.
        var storedThenDelivered = 0
        /// Pairs still in some relay's store.
        var stillStored = 0
        var duplicates = 0
        /// Messages whose sender got no answer, or a NACK that did not keep it.
        var unanswered = 0
        var refused = 0
        var violations: [String] = []
    }

    /// What became of every unicast: delivered exactly once, or stored (and, with `final`,
    /// delivered since: every recipient is online then).
    func tallyUnicasts(final: Bool) -> UnicastTally {
        var tally = UnicastTally()
        var inStores = Set<[GUID]>()
        for sim in relays {
            for row in sim.relay?.offline.messages ?? [] { inStores.insert([row.message.messageID, row.message.recipient]) }
            for row in sim.durable { inStores.insert([row.messageID, row.recipient]) }
        }
        for id in unicastOrder {
            let unicast = unicasts[id]!
            tally.messages += 1
            if !unicast.refused.isEmpty {
                tally.refused += 1
                tally.violations.append("message \(id) from c\(unicast.from) refused: \(unicast.refused)")
            }
            if unicast.acks == 0 && unicast.stored.isEmpty && unicast.refused.isEmpty {
                tally.unanswered += 1
                tally.violations.append("message \(id) from c\(unicast.from) to \(unicast.to.map { "c\($0)" }) got no answer")
            }
            if unicast.acks > 1 { tally.violations.append("message \(id) ACKed \(unicast.acks) times") }
            for to in unicast.to {
                tally.deliveries += 1
                let got = clients[to].received[id] ?? 0
                let stored = unicast.stored.contains(to)
                let waiting = inStores.contains([id, clients[to].id])
                if got == 1 { tally.deliveredOnce += 1 }
                if got > 1 {
                    tally.duplicates += 1
                    tally.violations.append("message \(id) delivered \(got) times to c\(to)")
                }
                if stored {
                    tally.stored += 1
                    if got >= 1 { tally.storedThenDelivered += 1 }
                }
                if waiting { tally.stillStored += 1 }
                if got == 0 && !stored && unicast.refused.isEmpty {
                    tally.violations.append(
                        "message \(id) from c\(unicast.from) to c\(to) of \(unicast.to.map { "c\($0)" }) neither delivered nor stored (acks \(unicast.acks)), sent at t=\(unicast.sentAt)")
                }
                if final && got == 0 && clients[to].online {
                    tally.violations.append("message \(id) to c\(to) never delivered (stored: \(stored), in a store: \(waiting))")
                }
            }
        }
        return tally
    }

    /// Warnings the relays logged (peering proof failures, id collisions, …).
    func warnings() -> [String] {
        relays.compactMap(\.relay).flatMap { relay in
            relay.logs.all.filter { $0.level >= .warning }.map { "\(relay.identity.name ?? "?"): \($0.message)" }
        }
    }
}

// MARK: Scenarios

/// A change to the mesh.
enum SimChange: CustomStringConvertible {
    case fail(Int)
    case revive(Int)
    case cut(SimEdge)
    case restore(SimEdge)

    var description: String {
        switch self {
        case .fail(let relay): "fail r\(relay)"
        case .revive(let relay): "revive r\(relay)"
        case .cut(let edge): "cut \(edge)"
        case .restore(let edge): "restore \(edge)"
        }
    }
}

/// Which changes a scenario makes.
enum SimPlan {
    case fixed([SimChange])
    /// `count` random changes (relays failing and coming back, links cut and restored; at most
    /// `maxDown` relays and `maxCut` links down at a time), then everything back.
    case random(count: Int, maxDown: Int, maxCut: Int)
}

/// What a scenario measured.
struct SimReport {
    var name: String
    var relays: Int
    var links: Int
    var clients: Int
    var bringUp: MeshRelaySimulation.ChangeResult
    var changes: [MeshRelaySimulation.ChangeResult]
    var floods: [MeshRelaySimulation.FloodResult]
    var tally: MeshRelaySimulation.UnicastTally
    /// The longest time next hops formed a loop for some node, in intervals.
    var longestLoop: Double
    var longestLoopNode: String?
    var problems: [String]
    var warnings: [String]
    var seconds: Double
}

extension MeshRelaySimulation {
    func apply(_ change: SimChange) {
        switch change {
        case .fail(let relay): failRelay(relay)
        case .revive(let relay): reviveRelay(relay)
        case .cut(let edge): cutLink(edge)
        case .restore(let edge): restoreLink(edge)
        }
    }

    /// The next random change, given what is down now.
    private func randomChange(maxDown: Int, maxCut: Int) -> SimChange {
        let down = relays.filter { !$0.isUp }.map(\.index)
        let cutNow = cut.sorted()
        let liveEdges = links.keys.sorted()
        var choices: [SimChange] = []
        if down.count < maxDown {
            let up = relays.filter(\.isUp).map(\.index)
            choices.append(.fail(up[Int.random(in: 0..<up.count, using: &rng)]))
        }
        if let first = down.first { choices.append(.revive(first)) }
        if cutNow.count < maxCut, !liveEdges.isEmpty {
            choices.append(.cut(liveEdges[Int.random(in: 0..<liveEdges.count, using: &rng)]))
        }
        if let first = cutNow.first { choices.append(.restore(first)) }
        return choices[Int.random(in: 0..<choices.count, using: &rng)]
    }

    /// Brings the mesh up, then makes each change and lets it settle. Right after each change (the
    /// routes still moving) and again once it settled: a flood and a round of unicasts. At the
    /// end everything is back, and stored messages get time to follow the routes.
    func run(_ plan: SimPlan, unicastsPerRound: Int, floodsPerRound: Int = 1) -> SimReport {
        let clock = Date()
        start()
        let bringUp = settle("bring-up", since: 0, before: SimTraffic(), limit: 40)
        var floods: [FloodResult] = []
        var changes: [ChangeResult] = []
        func traffic() {
            for _ in 0..<floodsPerRound { if let result = flood() { floods.append(result) } }
            sendUnicasts(unicastsPerRound)
        }
        traffic()
        func make(_ change: SimChange) {
            let start = time
            let before = self.traffic
            apply(change)
            traffic()
            changes.append(settle(change.description, since: start, before: before))
            traffic()
        }
        switch plan {
        case .fixed(let list):
            for change in list { make(change) }
        case .random(let count, let maxDown, let maxCut):
            for _ in 0..<count { make(randomChange(maxDown: maxDown, maxCut: maxCut)) }
        }
        for relay in relays where !relay.isUp { make(.revive(relay.index)) }
        for edge in cut.sorted() { make(.restore(edge)) }
        // Stored messages go out as routes appear, and are retried once a second.
        for _ in 0..<12 {
            if tallyUnicasts(final: true).stillStored == 0 { break }
            advance(intervals: 4)
        }
        return SimReport(
            name: name, relays: relayCount, links: edges.count, clients: clients.count, bringUp: bringUp, changes: changes,
            floods: floods, tally: tallyUnicasts(final: true), longestLoop: longestLoop / interval,
            longestLoopNode: longestLoopNode, problems: problems, warnings: warnings(), seconds: Date().timeIntervalSince(clock))
    }
}
