import Foundation
import Logging
import NIOCore
import NIOPosix
import PTPProtocol
import RelayConfig

@testable import RelayCore

/// A relay started in this process, listening on a free loopback port (the relay refuses port 0:
/// a port the kernel just gave out and took back), its store in memory. Returns it and the port.
func startInProcessRelay(threads: Int, label: String) async throws -> (RelayServer, Int) {
    let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
    guard let free = probe.localAddress?.port else { throw ChannelError.inappropriateOperationForState }
    try await probe.close()
    var configuration = RelayConfiguration()
    configuration.relay.listen = ["127.0.0.1:\(free)"]
    configuration.relay.threads = threads
    configuration.stats.listen = nil
    let server = try RelayServer(
        configuration: configuration, identity: NodeAddress(id: GUID.random(), name: "relay"), logger: Logger(label: label),
        store: InMemoryStore())
    try await server.start()
    return (server, free)
}

/// A blocking TCP socket connected to 127.0.0.1:`port`, with a receive buffer of
/// `receiveBuffer` bytes when given (set before the connect, so the window is small from the start).
func connectedLoopbackSocket(port: Int, receiveBuffer: Int32? = nil) throws -> Int32 {
    let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    if var size = receiveBuffer {
        setsockopt(client, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        close(client)
        throw IOError(errnoCode: errno, reason: "connect")
    }
    return client
}
