import PTPProtocol
import RelayMesh

/// An undirected link between two relays (by index).
struct MeshLink: Hashable, Comparable {
    let a: Int
    let b: Int

    init(_ x: Int, _ y: Int) {
        a = min(x, y)
        b = max(x, y)
    }

    func other(than end: Int) -> Int { end == a ? b : a }

    static func < (lhs: MeshLink, rhs: MeshLink) -> Bool { (lhs.a, lhs.b) < (rhs.a, rhs.b) }
}

/// Relays and the links between them.
struct MeshTopology {
    let name: String
    let relayCount: Int
    let links: [MeshLink]

    static var triangle: MeshTopology {
        MeshTopology(name: "triangle", relayCount: 3, links: [MeshLink(0, 1), MeshLink(1, 2), MeshLink(2, 0)])
    }

    static func ring(_ count: Int) -> MeshTopology {
        MeshTopology(name: "ring\(count)", relayCount: count, links: (0..<count).map { MeshLink($0, ($0 + 1) % count) })
    }

    /// A random tree (each relay links to a random earlier one) plus `extraLinks` random links.
    static func random(_ count: Int, extraLinks: Int, seed: UInt64) -> MeshTopology {
        var random = SeededRandom(seed: seed)
        var links: Set<MeshLink> = []
        for relay in 1..<count { links.insert(MeshLink(relay, Int.random(in: 0..<relay, using: &random))) }
        while links.count < count - 1 + extraLinks {
            let a = Int.random(in: 0..<count, using: &random)
            let b = Int.random(in: 0..<count, using: &random)
            if a != b { links.insert(MeshLink(a, b)) }
        }
        return MeshTopology(name: "random\(count)+\(extraLinks)/seed\(seed)", relayCount: count, links: links.sorted())
    }
}

/// Many `RouteTable`s wired in one process, no sockets, driven by a discrete-event clock.
///
/// Time is counted in units of 1/1000 `routing.interval`. A ROUTING batch takes a random
/// `latency` (less than one interval) to arrive, in order per direction, and is lost when its
/// link goes down before it arrives. Each relay follows the batching rule of `RouteTable`
/// exactly: after every event it adds `takeChanges()` to a pending set per peer, and sends a
/// peer its pending ids at once when its last delta batch to that peer went at least an interval
/// ago (an eighth of one when a pending change is urgent), else in one batch at that moment.
/// Full tables go out when a link comes up and every `refresh`, and do not count as delta
/// batches. Processing takes no time.
final class MeshSimulation {
    static let interval = 1000
    static let longestRoute = 31
    /// The relay's rule: an urgent batch may follow the previous one after an eighth of an interval.
    static let urgentSpacing = 125

    struct Directed: Hashable {
        let from: Int
        let to: Int
    }

    private enum Event {
        case deliver(Directed, epoch: Int, entries: [MeshRouteEntry])
        case flush(Directed, epoch: Int)
        case refresh(relay: Int)
        /// The relay notices that a client that moved away closed its connection.
        case staleClientGone(GUID, relay: Int)
    }

    /// What one change cost and how long the mesh took to get it right.
    struct Measurement {
        /// Ticks (intervals) after the change until every route was right and stayed right.
        var intervals: Int
        /// Intervals until the last change of any table (fractional): an upper bound of the
        /// convergence time at finer grain than the ticks.
        var settle: Double
        /// Delta entries and batches sent because of the change.
        var entries: Int
        var batches: Int
        /// Forwarding loops seen at a tick or the moment a route changed, and what was still wrong
        /// when the mesh went quiet.
        var loops: [String]
        var failure: String?
    }

    let latency: ClosedRange<Int>
    let refreshPeriod: Int
    /// The spacing of urgent batches, in thousandths of an interval (nil: no urgent batches, the
    /// strict one batch per interval).
    let urgentSpacing: Int?
    private(set) var now = 0
    private var random: SeededRandom
    let relayIDs: [GUID]
    private let relayIndex: [GUID: Int]
    private(set) var tables: [RouteTable]
    private(set) var alive: [Bool]
    let plannedLinks: [MeshLink]
    private(set) var upLinks: Set<MeshLink> = []
    private(set) var failedLinks: Set<MeshLink> = []
    private var neighbours: [[Int]]
    private var epochs: [MeshLink: Int] = [:]
    /// Clients that are connected, and the relay they are connected to.
    private(set) var home: [GUID: Int] = [:]
    /// Every client id ever used, for the loop check (a gone client must not loop either).
    private(set) var everyClient: [GUID] = []
    private var clientsOfFailedRelay: [Int: [GUID]] = [:]
    private var nextClientNumber: UInt64 = 0

    private var lastDeltaSent: [Directed: Int] = [:]
    private var pendingUrgent: Set<Directed> = []
    private var pending: [Directed: Set<GUID>] = [:]
    /// When a flush is armed per direction (the earliest one counts).
    private var flushAt: [Directed: Int] = [:]
    private var lastArrival: [Directed: Int] = [:]

    private var queue: [(time: Int, order: Int, event: Event)] = []
    private var eventOrder = 0
    /// Deliveries and flushes waiting: zero means the mesh is quiet (refreshes aside).
    private var busyEvents = 0

    private(set) var deltaEntries = 0
    private(set) var deltaBatches = 0
    private(set) var fullEntries = 0
    private(set) var invalidEntries = 0
    /// Loops found when a route changed, at any moment (not only at ticks).
    private(set) var transientLoops: [String] = []
    private(set) var collisions: [RouteCollision] = []
    private var lastTableChange = 0
    private var cachedDistances: [[Int]]?

    /// Relays of `topology` with `clients` clients spread at random; no link is up yet (`start`).
    init(
        topology: MeshTopology, clients: Int, seed: UInt64, latency: ClosedRange<Int> = 20...80,
        refreshIntervals: Int = 40, urgentSpacing: Int? = MeshSimulation.urgentSpacing
    ) {
        self.urgentSpacing = urgentSpacing
        precondition(latency.upperBound < Self.interval)
        self.latency = latency
        self.refreshPeriod = refreshIntervals * Self.interval
        random = SeededRandom(seed: seed)
        relayIDs = (0..<topology.relayCount).map { GUID(high: 0x5E1A_0000_0000_4000, low: 0x8000_0000_0000_0000 | UInt64($0)) }
        relayIndex = Dictionary(uniqueKeysWithValues: relayIDs.enumerated().map { ($1, $0) })
        tables = relayIDs.enumerated().map { RouteTable(selfID: $1, name: "relay\($0)") }
        alive = Array(repeating: true, count: topology.relayCount)
        plannedLinks = topology.links
        neighbours = Array(repeating: [], count: topology.relayCount)
        for _ in 0..<clients { addClient(at: Int.random(in: 0..<topology.relayCount, using: &random)) }
        for relay in relayIDs.indices {
            schedule(at: Int.random(in: 1..<refreshPeriod, using: &random), .refresh(relay: relay))
        }
    }

    // MARK: Changes

    /// Brings every planned link up at once.
    func start() {
        for link in plannedLinks { linkUp(link) }
    }

    @discardableResult
    func addClient(at relay: Int) -> GUID {
        nextClientNumber += 1
        let client = GUID(high: 0xC11E_0000_0000_4000, low: 0x8000_0000_0000_0000 | nextClientNumber)
        everyClient.append(client)
        connect(client, to: relay)
        return client
    }

    func removeClient(_ client: GUID) {
        guard let relay = home.removeValue(forKey: client) else { return }
        tables[relay].removeLocal(client)
        afterEvent(relay)
    }

    /// The client reconnects to `relay`: with `newPlaceFirst` it binds there a quarter of an
    /// interval before its old relay notices that it left (the old connection closing late), else
    /// after.
    func moveClient(_ client: GUID, to relay: Int, newPlaceFirst: Bool) {
        guard let old = home[client], old != relay else { return }
        if newPlaceFirst {
            connect(client, to: relay)
            schedule(at: now + Self.interval / 4, .staleClientGone(client, relay: old))
        } else {
            removeClient(client)
            connect(client, to: relay)
        }
    }

    /// The relay dies: every link goes down at once and its clients vanish.
    func failRelay(_ relay: Int) {
        guard alive[relay] else { return }
        alive[relay] = false
        for neighbour in neighbours[relay] { linkDown(MeshLink(relay, neighbour)) }
        clientsOfFailedRelay[relay] = home.filter { $0.value == relay }.map(\.key).sorted()
        home = home.filter { $0.value != relay }
        cachedDistances = nil
    }

    /// The relay comes back with an empty table (it restarted); its clients reconnect to it, then
    /// its links come up.
    func reviveRelay(_ relay: Int) {
        guard !alive[relay] else { return }
        alive[relay] = true
        tables[relay] = RouteTable(selfID: relayIDs[relay], name: "relay\(relay)")
        for client in clientsOfFailedRelay.removeValue(forKey: relay) ?? [] { connect(client, to: relay) }
        for link in plannedLinks where (link.a == relay || link.b == relay) && !failedLinks.contains(link) {
            linkUp(link)
        }
        cachedDistances = nil
    }

    func failLink(_ link: MeshLink) {
        failedLinks.insert(link)
        linkDown(link)
    }

    func restoreLink(_ link: MeshLink) {
        failedLinks.remove(link)
        linkUp(link)
    }

    private func connect(_ client: GUID, to relay: Int) {
        home[client] = relay
        tables[relay].addLocal(NodeAddress(id: client, name: "client"), legacy: false)
        afterEvent(relay)
    }

    private func linkUp(_ link: MeshLink) {
        guard alive[link.a], alive[link.b], upLinks.insert(link).inserted else { return }
        epochs[link, default: 0] += 1
        neighbours[link.a].append(link.b)
        neighbours[link.b].append(link.a)
        neighbours[link.a].sort()
        neighbours[link.b].sort()
        cachedDistances = nil
        for (from, to) in [(link.a, link.b), (link.b, link.a)] {
            let key = Directed(from: from, to: to)
            lastDeltaSent[key] = nil
            pending[key] = nil
            pendingUrgent.remove(key)
            flushAt[key] = nil
            tables[from].peerUp(relayIDs[to])
        }
        for (from, to) in [(link.a, link.b), (link.b, link.a)] {
            let entries = tables[from].fullAdvertisement(to: relayIDs[to])
            fullEntries += entries.count
            transmit(Directed(from: from, to: to), entries)
        }
        afterEvent(link.a)
        afterEvent(link.b)
    }

    private func linkDown(_ link: MeshLink) {
        guard upLinks.remove(link) != nil else { return }
        epochs[link, default: 0] += 1
        neighbours[link.a].removeAll { $0 == link.b }
        neighbours[link.b].removeAll { $0 == link.a }
        cachedDistances = nil
        for (end, other) in [(link.a, link.b), (link.b, link.a)] {
            let key = Directed(from: end, to: other)
            pending[key] = nil
            pendingUrgent.remove(key)
            flushAt[key] = nil
            guard alive[end] else { continue }
            tables[end].peerDown(relayIDs[other])
            afterEvent(end)
        }
    }

    // MARK: The batching rule

    /// What a relay does after each event: its changes join every peer's pending set, and go out
    /// now or when the peer's interval ends.
    private func afterEvent(_ relay: Int) {
        let changes = tables[relay].takeChanges()
        guard !changes.isEmpty else { return }
        lastTableChange = now
        for id in changes.ids {
            if let loop = loop(to: id, from: relay) { transientLoops.append("t=\(now): \(loop)") }
        }
        for neighbour in neighbours[relay] {
            let key = Directed(from: relay, to: neighbour)
            pending[key, default: []].formUnion(changes.ids)
            if changes.urgent { pendingUrgent.insert(key) }
            send(key)
        }
    }

    /// Sends the pending batch when the rule allows it, else makes sure a flush comes when it does.
    private func send(_ key: Directed) {
        guard let ids = pending[key], !ids.isEmpty else { return }
        if let last = lastDeltaSent[key] {
            var allowed = last + Self.interval
            if pendingUrgent.contains(key), let urgentSpacing { allowed = last + urgentSpacing }
            if now < allowed {
                if flushAt[key].map({ allowed < $0 }) ?? true {
                    flushAt[key] = allowed
                    schedule(at: allowed, .flush(key, epoch: epoch(key)))
                }
                return
            }
        }
        pending[key] = nil
        pendingUrgent.remove(key)
        lastDeltaSent[key] = now
        let entries = tables[key.from].advertisement(to: relayIDs[key.to], of: Array(ids))
        deltaEntries += entries.count
        deltaBatches += 1
        transmit(key, entries)
    }

    private func transmit(_ key: Directed, _ entries: [MeshRouteEntry]) {
        let arrival = max(now + Int.random(in: latency, using: &random), (lastArrival[key] ?? 0) + 1)
        lastArrival[key] = arrival
        schedule(at: arrival, .deliver(key, epoch: epoch(key), entries: entries))
    }

    private func epoch(_ key: Directed) -> Int { epochs[MeshLink(key.from, key.to), default: 0] }

    // MARK: The clock

    private func schedule(at time: Int, _ event: Event) {
        eventOrder += 1
        if case .refresh = event {} else { busyEvents += 1 }
        // A binary heap on (time, order).
        queue.append((time, eventOrder, event))
        var child = queue.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard (queue[child].time, queue[child].order) < (queue[parent].time, queue[parent].order) else { break }
            queue.swapAt(child, parent)
            child = parent
        }
    }

    private func popEvent() -> (time: Int, event: Event) {
        let first = queue[0]
        let last = queue.removeLast()
        if !queue.isEmpty {
            queue[0] = last
            var parent = 0
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var smallest = parent
                for child in [left, right] where child < queue.count {
                    if (queue[child].time, queue[child].order) < (queue[smallest].time, queue[smallest].order) {
                        smallest = child
                    }
                }
                guard smallest != parent else { break }
                queue.swapAt(parent, smallest)
                parent = smallest
            }
        }
        return (first.time, first.event)
    }

    /// Processes every event up to `time`.
    func run(until time: Int) {
        while let next = queue.first, next.time <= time {
            let (eventTime, event) = popEvent()
            now = eventTime
            handle(event)
        }
        now = time
    }

    private func handle(_ event: Event) {
        switch event {
        case .deliver(let key, let sentEpoch, let entries):
            busyEvents -= 1
            guard sentEpoch == epoch(key), upLinks.contains(MeshLink(key.from, key.to)) else { return }
            let result = tables[key.to].receive(entries, from: relayIDs[key.from])
            invalidEntries += result.invalid
            collisions += result.collisions
            afterEvent(key.to)
        case .flush(let key, let sentEpoch):
            busyEvents -= 1
            guard sentEpoch == epoch(key) else { return }
            if flushAt[key] == now { flushAt[key] = nil }
            send(key)
        case .staleClientGone(let client, let relay):
            busyEvents -= 1
            guard alive[relay] else { return }
            tables[relay].removeLocal(client)
            afterEvent(relay)
        case .refresh(let relay):
            schedule(at: now + refreshPeriod, .refresh(relay: relay))
            guard alive[relay] else { return }
            for neighbour in neighbours[relay] {
                let entries = tables[relay].fullAdvertisement(to: relayIDs[neighbour])
                fullEntries += entries.count
                transmit(Directed(from: relay, to: neighbour), entries)
            }
            tables[relay].expireWithdrawals()
        }
    }

    // MARK: Measuring

    /// Applies `change` and advances tick by tick (one `routing.interval` each) until the mesh is
    /// quiet, checking for forwarding loops at every tick and for right routes.
    func measure(_ change: () -> Void) -> Measurement {
        let start = now
        let loopsBefore = transientLoops.count
        let entriesBefore = deltaEntries
        let batchesBefore = deltaBatches
        lastTableChange = start
        change()
        var lastWrongTick = 0
        var loops: [String] = []
        var failure: String?
        var tick = 0
        while true {
            tick += 1
            run(until: start + tick * Self.interval)
            loops += forwardingLoops().map { "tick \(tick): \($0)" }
            if let wrong = wrongRoute() {
                lastWrongTick = tick
                failure = wrong
            } else {
                failure = nil
            }
            if busyEvents == 0, failure == nil { break }
            if tick >= 100 {
                failure = "not converged after 100 intervals: \(failure ?? "busy")"
                break
            }
        }
        return Measurement(
            intervals: lastWrongTick + 1,
            settle: Double(lastTableChange - start) / Double(Self.interval),
            entries: deltaEntries - entriesBefore,
            batches: deltaBatches - batchesBefore,
            loops: loops + transientLoops[loopsBefore...],
            failure: failure)
    }

    /// Hop counts between live relays over the links that are up (Int.max: no path).
    func distances() -> [[Int]] {
        if let cachedDistances { return cachedDistances }
        var result = Array(repeating: Array(repeating: Int.max, count: relayIDs.count), count: relayIDs.count)
        for source in relayIDs.indices where alive[source] {
            result[source][source] = 0
            var frontier = [source]
            while !frontier.isEmpty {
                var next: [Int] = []
                for relay in frontier {
                    for neighbour in neighbours[relay] where result[source][neighbour] == Int.max {
                        result[source][neighbour] = result[source][relay] + 1
                        next.append(neighbour)
                    }
                }
                frontier = next
            }
        }
        cachedDistances = result
        return result
    }

    /// The first route that differs from the shortest paths of the current graph (nil: all right):
    /// every live relay routes every node it can reach, at the right distance, through a neighbour
    /// on a shortest path, and holds nothing else (no route to a node that is gone).
    func wrongRoute() -> String? {
        let distance = distances()
        for relay in relayIDs.indices where alive[relay] {
            let table = tables[relay]
            var expected = 0
            func check(_ node: GUID, at origin: Int, extra: Int) -> String? {
                let route = table.route(to: node)
                let hops = distance[relay][origin]
                // ttl 32 is unreachable: a route is at most 31 hops (learned from an entry of 30).
                if hops == Int.max || hops + extra > Self.longestRoute {
                    return route == nil ? nil : "relay \(relay) routes \(node), which it cannot reach"
                }
                expected += 1
                if hops == 0 {
                    return route?.nextHop == .local ? nil : "relay \(relay) does not hold its client \(node)"
                }
                guard let route, case .peer(let peer) = route.nextHop, let hop = relayIndex[peer],
                    route.ttl == hops + extra, neighbours[relay].contains(hop), distance[hop][origin] == hops - 1
                else {
                    return "relay \(relay) to \(node) at relay \(origin): \(String(describing: route)), want ttl \(hops + extra)"
                }
                return nil
            }
            for other in relayIDs.indices where other != relay && alive[other] {
                if let wrong = check(relayIDs[other], at: other, extra: 0) { return wrong }
            }
            for (client, origin) in home {
                if let wrong = check(client, at: origin, extra: 1) { return wrong }
            }
            if table.reachableCount != expected {
                return "relay \(relay) holds \(table.reachableCount) routes, want \(expected)"
            }
        }
        return nil
    }

    /// A loop through `start` or downstream of it, for a node whose route just changed there: every
    /// change is checked the moment it happens, so even a loop that lasts a few milliseconds shows.
    private func loop(to destination: GUID, from start: Int) -> String? {
        var path = [start]
        var current = start
        while let peer = tables[current].nextHopPeer(for: destination), let hop = relayIndex[peer] {
            if path.contains(hop) { return "loop to \(destination) through relays \(path + [hop])" }
            path.append(hop)
            current = hop
        }
        return nil
    }

    /// Forwarding loops: following next hops from a live relay comes back to a relay on the path.
    /// A next hop that is not an up link is reported too.
    func forwardingLoops() -> [String] {
        var found: [String] = []
        var state = Array(repeating: 0, count: relayIDs.count)  // 0 unseen, 1 on the path, 2 done
        for destination in relayIDs + everyClient {
            for index in state.indices { state[index] = 0 }
            for start in relayIDs.indices where alive[start] && state[start] == 0 {
                var path: [Int] = []
                var current = start
                while true {
                    if state[current] == 1 {
                        found.append("loop to \(destination) through relays \(path)")
                        break
                    }
                    if state[current] == 2 { break }
                    state[current] = 1
                    path.append(current)
                    guard let peer = tables[current].nextHopPeer(for: destination) else { break }
                    guard let hop = relayIndex[peer], upLinks.contains(MeshLink(current, hop)) else {
                        found.append("relay \(current) forwards \(destination) over a link that is down")
                        break
                    }
                    current = hop
                }
                for relay in path { state[relay] = 2 }
            }
        }
        return found
    }

    /// The longest shortest path between live relays.
    var diameter: Int {
        distances().joined().filter { $0 != Int.max }.max() ?? 0
    }

    func randomClient() -> GUID {
        let clients = home.keys.sorted()
        return clients[Int.random(in: 0..<clients.count, using: &random)]
    }

    func randomRelay(alive wanted: Bool = true, except excluded: Int? = nil) -> Int? {
        let candidates = relayIDs.indices.filter { alive[$0] == wanted && $0 != excluded }
        return candidates.isEmpty ? nil : candidates[Int.random(in: 0..<candidates.count, using: &random)]
    }

    func randomUpLink() -> MeshLink? {
        let links = upLinks.sorted()
        return links.isEmpty ? nil : links[Int.random(in: 0..<links.count, using: &random)]
    }

    func home(of client: GUID) -> Int? { home[client] }
}
