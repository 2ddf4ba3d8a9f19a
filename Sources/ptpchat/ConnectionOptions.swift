import ArgumentParser
import PTPProtocol

/// The options every command takes: where the relay is and who this node is.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The relay to connect to.", valueName: "host:port"))
    var relay: Endpoint

    @Option(
        name: .customLong("node-id"),
        help: ArgumentHelp("This node's id (a GUID; `name@GUID` also sets the name). Default: a random GUID.", valueName: "guid"))
    var nodeID: String?

    @Option(name: .long, help: ArgumentHelp("The display name sent with the id (letters and digits).", valueName: "name"))
    var name: String?

    @Option(
        name: .long,
        help: ArgumentHelp("Seconds between keepalives sent to the relay.", valueName: "seconds", visibility: .hidden))
    var keepalive: Double = 20

    mutating func validate() throws {
        guard keepalive > 0, keepalive <= 86_400 else {
            throw ValidationError("--keepalive must be more than 0 and at most 86400 seconds")
        }
        if let nodeID, NodeAddress(nodeID) == nil {
            throw ValidationError("--node-id '\(nodeID)' is not a GUID")
        }
        if let name, !NodeAddress.isValidName(name) {
            throw ValidationError("--name '\(name)' must be 1 to 64 letters and digits")
        }
    }

    var keepaliveInterval: Duration { .milliseconds(Int64(keepalive * 1000)) }

    /// This node as written in `sender_id`: `name@GUID`. Without `--node-id` each call draws a new GUID.
    func makeIdentity() -> SenderTag {
        let given = nodeID.flatMap { NodeAddress($0) }
        let id = given?.id ?? GUID.random()
        return SenderTag(NodeAddress(id: id, name: name ?? given?.name ?? "ptpchat"))
    }
}

/// Parses a `--to` recipient: a GUID, or `name@GUID` of which only the GUID counts.
struct Recipient: ExpressibleByArgument, Sendable {
    var id: GUID

    init?(argument: String) {
        guard let address = NodeAddress(argument) else { return nil }
        id = address.id
    }
}
