import Atomics
import CLinuxExtras
import NIOConcurrencyHelpers
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
///
/// Reflection costs about 90,000 instructions a lookup (a `Mirror` boxes every stored property it
/// passes). So the first lookup also learns where the two values lie in the objects (the byte
/// offset of the socket's reference in the channel, and of the descriptor in the socket), and
/// later lookups for a channel of the same class read them there: a few loads, then the same
/// check against the remote address; one that fails goes back to reflection.
///
/// Every plaintext connection looks its socket up at its first write, so the check's system call
/// (`getpeername`) would be one more per handshake. A class's stored properties lie at the same
/// offsets in every instance, so once the offsets have read the right descriptor of
/// `checksBeforeTrust` different connections (the check says so each time), later lookups for that
/// class read them unchecked. The first match the learning takes could be another field that held
/// the same number by chance in one object; that it held each connection's own descriptor in
/// several is what makes it the descriptor's field.
enum ChannelSocket {
    /// Where the socket and its descriptor lie, for channels of one class.
    private struct Layout {
        let channelClass: ObjectIdentifier
        let socketOffset: Int
        let descriptorOffset: Int
        /// Lookups at these offsets the remote-address check confirmed, each of another descriptor
        /// than the one before.
        var checks = 0
        var lastChecked: CInt = -1
    }
    private static let learned = NIOLockedValueBox<Layout?>(nil)
    static let checksBeforeTrust = 8

    /// Lookups that went through reflection (tests: the learned offsets serve the rest).
    static var reflectiveLookups: Int { reflections.load(ordering: .relaxed) }
    private static let reflections = ManagedAtomic(0)
    /// Lookups the remote-address check confirmed (tests: after `checksBeforeTrust`, none are).
    static var checkedLookups: Int { checked.load(ordering: .relaxed) }
    private static let checked = ManagedAtomic(0)

    static func descriptor(of channel: Channel) -> CInt? {
        let object = channel as AnyObject
        let channelClass = ObjectIdentifier(type(of: object))
        if let layout = learned.withLockedValue({ $0 }), layout.channelClass == channelClass {
            let base = UnsafeRawPointer(Unmanaged.passUnretained(object).toOpaque())
            let socket = base.load(fromByteOffset: layout.socketOffset, as: UnsafeRawPointer.self)
            let descriptor = socket.load(fromByteOffset: layout.descriptorOffset, as: CInt.self)
            if layout.checks >= checksBeforeTrust { return descriptor >= 0 ? descriptor : nil }
            if descriptor >= 0, belongs(descriptor, to: channel) {
                checked.wrappingIncrement(ordering: .relaxed)
                learned.withLockedValue {
                    guard var current = $0, current.channelClass == channelClass, current.socketOffset == layout.socketOffset,
                        current.descriptorOffset == layout.descriptorOffset, current.lastChecked != descriptor
                    else { return }
                    current.checks += 1
                    current.lastChecked = descriptor
                    $0 = current
                }
                return descriptor
            }
        }
        reflections.wrappingIncrement(ordering: .relaxed)
        guard let socket = storedProperty("socket", of: channel),
            let descriptor = storedProperty("descriptor", of: socket) as? CInt,
            descriptor >= 0,
            belongs(descriptor, to: channel)
        else { return nil }
        learn(channel: object, socket: socket as AnyObject, descriptor: descriptor)
        return descriptor
    }

    /// Finds the offsets of the socket's reference in `channel` and of `descriptor` in `socket`
    /// (their first occurrence: a wrong one fails the remote-address check and is learned again).
    private static func learn(channel: AnyObject, socket: AnyObject, descriptor: CInt) {
        let channelBase = UnsafeRawPointer(Unmanaged.passUnretained(channel).toOpaque())
        let socketBase = UnsafeRawPointer(Unmanaged.passUnretained(socket).toOpaque())
        // Past the object header (metadata and reference counts); within the object's allocation.
        let header = 2 * MemoryLayout<UInt>.size
        let channelSize = Int(ptpchat_allocation_size(channelBase))
        let socketSize = Int(ptpchat_allocation_size(socketBase))
        guard
            let socketOffset = stride(from: header, through: channelSize - MemoryLayout<UInt>.size, by: MemoryLayout<UInt>.size).first(where: {
                channelBase.load(fromByteOffset: $0, as: UnsafeRawPointer.self) == socketBase
            }),
            let descriptorOffset = stride(from: header, through: socketSize - MemoryLayout<CInt>.size, by: MemoryLayout<CInt>.size).first(where: {
                socketBase.load(fromByteOffset: $0, as: CInt.self) == descriptor
            })
        else { return }
        learned.withLockedValue {
            // The reflective lookup checked this descriptor: the first confirmation.
            $0 = Layout(
                channelClass: ObjectIdentifier(type(of: channel)), socketOffset: socketOffset, descriptorOffset: descriptorOffset,
                checks: 1, lastChecked: descriptor)
        }
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
