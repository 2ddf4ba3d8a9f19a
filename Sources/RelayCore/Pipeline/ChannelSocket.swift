import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The descriptor of a NIO socket channel's socket: of a connection just accepted, to move it to
/// another loop (`LoopPlacer`), and of a busy plaintext connection, to write to it directly
/// (`DirectSocketWrites`).
///
/// NIO has no public way to read it (nor to change a channel's loop), so it is read by reflection:
/// `SocketChannel` keeps its socket in `socket`, the socket its descriptor in `descriptor`
/// (NIOPosix's BaseSocketChannel and BaseSocket). The value is checked against the channel's
/// remote address before it is used, and `LoopPlacementTests` checks the path on the NIO in use:
/// if a NIO release renames either, connections stay on the loop that accepted them (the relay
/// says so once) and every write goes through NIO.
enum ChannelSocket {
    static func descriptor(of channel: Channel) -> CInt? {
        guard let socket = storedProperty("socket", of: channel),
            let descriptor = storedProperty("descriptor", of: socket) as? CInt,
            descriptor >= 0,
            belongs(descriptor, to: channel)
        else { return nil }
        return descriptor
    }

    /// The stored property `label` of `subject` or of one of its superclasses.
    private static func storedProperty(_ label: String, of subject: Any) -> Any? {
        var mirror: Mirror? = Mirror(reflecting: subject)
        while let current = mirror {
            if let child = current.children.first(where: { $0.label == label }) { return child.value }
            mirror = current.superclassMirror
        }
        return nil
    }

    /// Whether `descriptor` is a socket connected to the channel's remote address (its port is
    /// enough to tell one connection from another on the same listener).
    private static func belongs(_ descriptor: CInt, to channel: Channel) -> Bool {
        guard let expected = channel.remoteAddress?.port else { return false }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let found = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(descriptor, $0, &length) }
        }
        guard found == 0 else { return false }
        // sockaddr_in and sockaddr_in6 both keep the port, big-endian, at offset 2.
        let family = Int32(storage.ss_family)
        guard family == AF_INET || family == AF_INET6 else { return false }
        return withUnsafeBytes(of: &storage) { Int(UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self))) } == expected
    }
}
