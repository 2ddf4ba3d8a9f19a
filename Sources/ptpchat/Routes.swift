import ArgumentParser
import Foundation
import PTPProtocol
import PTPPunch

/// `ptpchat routes`: connects, says HELLO and prints the ROUTING view the relay gives this client.
struct Routes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the relay's ROUTING view (the nodes it can reach) as a table.",
        discussion: """
            Connects as a fresh node, says HELLO and prints the nodes of the relay's first ROUTING: \
            node id, name and hops (the ROUTING ttl: 1 is a client of this relay, more is behind \
            peer relays), sorted by hops, then name, then id. --json prints one JSON object instead.

            What a client sees is the relay's routing.to_clients setting: "channels" (the default) \
            lists only the nodes that share a channel with this client or exchanged messages with \
            it, so a fresh `routes` sees none; "true" lists every node the relay can reach; \
            "false" none. An empty view says so.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: ArgumentHelp("Seconds to wait for the whole exchange.", valueName: "seconds"))
    var timeout: Double = 15

    @Flag(help: "Print one JSON object: relay, endpoint and nodes ({node_id, name, hops}).")
    var json = false

    func validate() throws {
        if !(timeout > 0 && timeout <= 86_400) { throw ValidationError("--timeout must be more than 0 and at most 86400 seconds") }
    }

    func run() async throws {
        let identity = connection.makeIdentity()
        let view: RouteView
        do {
            view = try await connection.link(
                identity: identity, tls: try connection.makeTLS(),
                timeout: (.milliseconds(Int64(timeout * 1000)), "after \(timeout) s waiting for the relay's ROUTING")
            ) { session in
                var view = RouteView()
                view.apply(try await session.handshake().line)
                guard let relayID = session.relayID else { throw ClientError.connectionLost("the relay sent no id in its ROUTING") }
                view.relay = relayID
                // The relay writes a table too large for one frame as several ROUTING frames at once,
                // before it reads the next frame from this node: its answer to a GETKEY addressed to
                // it (NACK `not_a_member`, it holds no keys) comes after the last of them. A GETKEY
                // has no side effect and no limit of its own (a CONNECT counted against
                // `limits.connect_per_minute`).
                let markerID = GUID.random()
                try await session.send(ClientFrames.getKeyFromRelay(id: markerID, from: identity, channel: "routes", channelID: .random()))
                while true {
                    let frame = try await session.next()
                    switch frame.verb {
                    case .routing:
                        view.apply(frame.line)
                    case .nack where frame.messageID == markerID:
                        return view
                    default:
                        continue
                    }
                }
            }
        } catch let error as ClientError {
            Console.diagnostic("ptpchat: \(error)")
            throw ExitCode(error.exitCode)
        }
        let text = json ? view.json(endpoint: connection.relay.description) : view.table(endpoint: connection.relay.description)
        Console.output(Array(text.utf8))
    }
}

/// The nodes of the ROUTING frames a relay sent, by id: a later entry replaces an earlier one, an
/// entry with `ttl` 32 withdraws the node (PROFILE.md section 9).
struct RouteView: Equatable {
    struct Entry: Equatable {
        var node: GUID
        var name: String?
        var hops: Int
    }

    var relay: GUID?
    private(set) var entries: [GUID: Entry] = [:]

    /// Reads the `msg_data.nodes` of one ROUTING frame (`InboundFrame.line`).
    mutating func apply(_ line: [UInt8]) {
        guard let frame = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any],
            let data = frame["msg_data"] as? [String: Any], let nodes = data["nodes"] as? [[String: Any]]
        else { return }
        for item in nodes {
            guard let text = item["node_id"] as? String, let address = NodeAddress(text), let hops = item["ttl"] as? Int else { continue }
            if hops >= MeshRouteEntry.unreachable {
                entries[address.id] = nil
            } else {
                entries[address.id] = Entry(node: address.id, name: address.name, hops: hops)
            }
        }
    }

    /// By hops, then name, then id.
    var sorted: [Entry] {
        entries.values.sorted { a, b in
            if a.hops != b.hops { return a.hops < b.hops }
            if (a.name ?? "") != (b.name ?? "") { return (a.name ?? "") < (b.name ?? "") }
            return a.node.description < b.node.description
        }
    }

    /// A heading line, then an aligned table; for an empty view, why it may be empty.
    func table(endpoint: String) -> String {
        let relayName = relay.map { "relay \($0) at \(endpoint)" } ?? "relay at \(endpoint)"
        let rows = sorted
        guard !rows.isEmpty else {
            return """
                \(relayName): no routes in this client's view.
                The relay's routing.to_clients setting decides what a client sees: "channels" (the default)
                lists only the nodes that share a channel with this client or exchanged messages with it,
                "false" none, "true" every node it can reach (docs/configuration.md).
                """
        }
        let header = ["NODE ID", "NAME", "HOPS"]
        let cells = rows.map { [$0.node.description, ReadableLine.safe($0.name ?? "-"), String($0.hops)] }
        let widths = header.indices.map { column in ([header] + cells).map { $0[column].count }.max() ?? 0 }
        func render(_ row: [String]) -> String {
            // The last column is a number: right-aligned under its heading.
            let hops = String(repeating: " ", count: widths[2] - row[2].count) + row[2]
            return [row[0].padding(toLength: widths[0], withPad: " ", startingAt: 0),
                    row[1].padding(toLength: widths[1], withPad: " ", startingAt: 0), hops].joined(separator: "  ")
        }
        let count = "\(rows.count) node\(rows.count == 1 ? "" : "s")"
        return ([relayName + ": " + count, render(header)] + cells.map(render)).joined(separator: "\n")
    }

    /// `{"endpoint", "nodes": [{"hops", "name", "node_id"}], "relay"}`, keys sorted.
    func json(endpoint: String) -> String {
        let object: [String: Any] = [
            "relay": relay.map { $0.description } ?? NSNull(),
            "endpoint": endpoint,
            "nodes": sorted.map { ["node_id": $0.node.description, "name": $0.name ?? NSNull(), "hops": $0.hops] as [String: Any] },
        ]
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}
