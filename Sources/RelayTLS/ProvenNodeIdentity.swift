import PTPProtocol

/// Fired down a connection's pipeline (a user inbound event) when its TLS handshake verified a
/// client certificate whose subjectAltName holds the URI `urn:uuid:GUID` (PROFILE.md section 3):
/// the connection owns that node id. Fired before any application data of the connection is read.
public struct ProvenNodeIdentity: Sendable, Equatable {
    public let nodeID: GUID

    public init(nodeID: GUID) {
        self.nodeID = nodeID
    }
}
