import PTPProtocol

/// How this side's NAT maps the punching port, as far as the observations tell.
public enum NATType: String, Sendable, Equatable {
    /// One public mapping for every destination (or no NAT at all): punching can work.
    case endpointIndependent = "endpoint-independent"
    /// A new mapping per destination: the port the relay saw is not the one the peer would see,
    /// so punching is pointless and the node stays on the relay.
    case symmetric
    /// One observation only: it cannot tell; punch anyway.
    case unknown

    /// Classifies the punching port's mapping from the relay's observation of it, the probe's
    /// (a second relay address, when `--probe` is given) and the socket's own local address.
    /// Two destinations that see different mappings prove a symmetric NAT. Two that see the same,
    /// or a relay that sees the local address itself (no NAT on the way), justify
    /// endpoint-independent. One observation of a NAT's mapping proves nothing: a symmetric NAT
    /// may also keep the local port for its first mapping.
    public static func classify(local: ConnectAddress?, relay: ConnectAddress, probe: ConnectAddress?) -> (nat: NATType, why: String) {
        if let probe, probe != relay {
            return (.symmetric, "the mapping depends on the destination: the relay saw \(relay), the probe saw \(probe)")
        }
        if let local, local == relay {
            return (.endpointIndependent, "no NAT: the relay sees the local address \(local)")
        }
        if probe != nil {
            return (.endpointIndependent, "two destinations saw the same mapping \(relay)")
        }
        return (.unknown, "one observation (\(relay)) cannot tell how the NAT maps; --probe tells")
    }
}
