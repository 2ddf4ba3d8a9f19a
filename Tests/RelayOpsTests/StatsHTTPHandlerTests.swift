#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import XCTest

@testable import RelayCore
@testable import RelayOps

/// `StatsHTTPHandler` behind NIO's HTTP server pipeline, on an `NIOAsyncTestingChannel` (bytes in,
/// bytes out), and `StatsServer` on a real loopback port.
final class StatsHTTPHandlerTests: XCTestCase {
    struct Response {
        var status: Int
        var headers: [String: String]
        var body: String
    }

    private var fake = FakeRelay()
    private var readiness = Readiness()

    override func setUp() {
        super.setUp()
        fake = FakeRelay()
        readiness = Readiness()
        readiness.set(.serving)
    }

    /// A channel with `configureHTTPServerPipeline` and the handler, as `StatsServer` builds it.
    private func makeChannel() async throws -> NIOAsyncTestingChannel {
        let channel = NIOAsyncTestingChannel()
        let collector = StatsCollector(readiness: readiness, source: fake.source())
        let readiness = self.readiness
        try await channel.testingEventLoop.executeInContext {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(StatsHTTPHandler(collector: collector, readiness: readiness))
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40000)).get()
        return channel
    }

    /// Writes `request` (raw HTTP/1.1) and reads one whole response.
    private func exchange(_ channel: NIOAsyncTestingChannel, _ request: String, head: Bool = false) async throws -> Response {
        try await channel.writeInbound(ByteBuffer(string: request))
        var bytes: [UInt8] = []
        while true {
            if let response = try parse(bytes, head: head) { return response }
            let part = try await channel.waitForOutboundWrite(as: IOData.self)
            guard case .byteBuffer(let buffer) = part else { XCTFail("a file region"); continue }
            bytes += buffer.readableBytesView
        }
    }

    private func parse(_ bytes: [UInt8], head isHead: Bool) throws -> Response? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let end = text.range(of: "\r\n\r\n") else { return nil }
        var lines = text[..<end.lowerBound].components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        let status = try XCTUnwrap(Int(statusLine[1]))
        var headers: [String: String] = [:]
        for line in lines {
            let parts = line.split(separator: ":", maxSplits: 1)
            headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces)
        }
        let body = String(text[end.upperBound...])
        if isHead { return Response(status: status, headers: headers, body: body) }
        guard let length = headers["content-length"].flatMap(Int.init), body.utf8.count >= length else { return nil }
        return Response(status: status, headers: headers, body: body)
    }

    private func get(_ path: String, method: String = "GET") async throws -> Response {
        let channel = try await makeChannel()
        let response = try await exchange(channel, "\(method) \(path) HTTP/1.1\r\nHost: stats\r\n\r\n", head: method == "HEAD")
        _ = try? await channel.finish()
        return response
    }

    // MARK: Routes

    func testHealthzIsAlways200() async throws {
        for state in [Readiness.State.starting, .serving, .reloading, .stopping] {
            readiness.set(state)
            let response = try await get("/healthz")
            XCTAssertEqual(response.status, 200, "\(state)")
            XCTAssertEqual(response.body, "ok\n")
        }
    }

    func testReadyzIs200OnlyWhileServingOrReloading() async throws {
        let expected: [(Readiness.State, Int, Bool)] = [(.starting, 503, false), (.serving, 200, true), (.reloading, 200, true), (.stopping, 503, false)]
        for (state, status, ready) in expected {
            readiness.set(state)
            XCTAssertEqual(readiness.isReady, ready, "\(state)")
            let response = try await get("/readyz")
            XCTAssertEqual(response.status, status, "/readyz while \(state)")
            XCTAssertEqual(response.body, "\(state.rawValue)\n")
        }
    }

    func testReadinessStartsNotReady() {
        let fresh = Readiness()
        XCTAssertEqual(fresh.current, .starting)
        XCTAssertFalse(fresh.isReady)
    }

    func testStatsAndMetrics() async throws {
        fake.change { $0.counters = FakeRelay.busyCounters() }
        let stats = try await get("/stats")
        XCTAssertEqual(stats.status, 200)
        XCTAssertEqual(stats.headers["content-type"], "application/json")
        XCTAssertEqual(stats.headers["cache-control"], "no-store")
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(stats.body.utf8)) as? [String: Any])
        XCTAssertEqual(json["node_id"] as? String, FakeRelay.nodeID.description)

        let metrics = try await get("/metrics?x=1")
        XCTAssertEqual(metrics.status, 200)
        XCTAssertTrue(metrics.headers["content-type"]?.hasPrefix("text/plain") ?? false)
        XCTAssertEqual(prometheusSeries(metrics.body)[#"ptpchat_drops_total{reason="invalid"}"#], 2, metrics.body)
    }

    func testAFailingSnapshotIs500() async throws {
        fake.fail(true)
        let response = try await get("/stats")
        XCTAssertEqual(response.status, 500)
        XCTAssertTrue(response.body.contains("did not answer"), response.body)
    }

    func testRoutesTakesALimitAndAMatchAndRefusesABadLimit() async throws {
        let routes = try await get("/routes?limit=5&match=x")
        XCTAssertEqual(routes.status, 200)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(routes.body.utf8)) as? [String: Any])
        XCTAssertEqual(json["count"] as? Int, 0)
        XCTAssertEqual(json["matched"] as? Int, 0)
        let bad = try await get("/routes?limit=lots")
        XCTAssertEqual(bad.status, 400)
        XCTAssertTrue(bad.body.contains("limit must be a whole number"), bad.body)
    }

    func testUnknownPathsAre404() async throws {
        for path in ["/nope", "/stats/x", "/healthz2", "/Metrics", "/index.htm", "/dashboard"] {
            let response = try await get(path)
            XCTAssertEqual(response.status, 404, path)
        }
    }

    // MARK: The dashboard

    func testDashboardIsOneSmallSelfContainedPageWithAStrictPolicy() async throws {
        for path in ["/", "/index.html", "/?refresh=1"] {
            let page = try await get(path)
            XCTAssertEqual(page.status, 200, path)
            XCTAssertEqual(page.headers["content-type"], "text/html; charset=utf-8", path)
            XCTAssertEqual(page.headers["x-content-type-options"], "nosniff")
            XCTAssertEqual(page.headers["cache-control"], "no-cache", "revalidated each time, never stale after an upgrade")
            XCTAssertEqual(page.headers["etag"], DashboardPage.entityTag)
            XCTAssertEqual(page.body, DashboardPage.html)
        }
        let bytes = DashboardPage.bytes.count
        XCTAssertLessThan(bytes, 30 * 1024, "the dashboard page is \(bytes) bytes")
        let html = DashboardPage.html
        // Nothing fetched from elsewhere: no URL, no src or external stylesheet, no @import or url().
        for forbidden in ["http:", "https:", "//cdn", " src=", "<link rel=\"stylesheet\"", "@import", "url(", "@font-face"] {
            XCTAssertFalse(html.contains(forbidden), "the page contains \(forbidden)")
        }
        // Exactly one inline script and one style sheet, the ones the policy allows by hash.
        XCTAssertEqual(html.components(separatedBy: "<script").count, 2)
        XCTAssertEqual(html.components(separatedBy: "<style").count, 2)
        XCTAssertTrue(html.contains("<script>\(DashboardPage.script)</script>"))
        XCTAssertTrue(html.contains("<style>\(DashboardPage.style)</style>"))
        let root = try await get("/")
        let policy = try XCTUnwrap(root.headers["content-security-policy"])
        let directives = Dictionary(
            uniqueKeysWithValues: policy.split(separator: ";").map { part -> (String, String) in
                let words = part.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1).map(String.init)
                return (words[0], words.count > 1 ? words[1] : "")
            })
        XCTAssertEqual(directives["default-src"], "'none'")
        XCTAssertEqual(directives["script-src"], "'\(DashboardPage.sha256(DashboardPage.script))'")
        XCTAssertEqual(directives["style-src"], "'\(DashboardPage.sha256(DashboardPage.style))'")
        XCTAssertEqual(directives["connect-src"], "'self'")
        XCTAssertEqual(directives["frame-ancestors"], "'none'")
        XCTAssertFalse(policy.contains("unsafe"), policy)
        // A known SHA-256 (FIPS 180-2 "abc"), so that the hashes above are real ones.
        XCTAssertEqual(DashboardPage.sha256("abc"), "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=")
    }

    func testDashboardRevalidatesWith304AndHeadHasNoBody() async throws {
        let tag = DashboardPage.entityTag
        var channel = try await makeChannel()
        let unchanged = try await exchange(channel, "GET / HTTP/1.1\r\nHost: stats\r\nIf-None-Match: \"other\", \(tag)\r\n\r\n", head: true)
        XCTAssertEqual(unchanged.status, 304)
        XCTAssertEqual(unchanged.body, "", "a 304 has no body")
        XCTAssertEqual(unchanged.headers["etag"], tag)
        XCTAssertNotNil(unchanged.headers["content-security-policy"])
        _ = try? await channel.finish()

        channel = try await makeChannel()
        let changed = try await exchange(channel, "GET / HTTP/1.1\r\nHost: stats\r\nIf-None-Match: \"older-build\"\r\n\r\n")
        XCTAssertEqual(changed.status, 200)
        XCTAssertEqual(changed.body, DashboardPage.html)
        _ = try? await channel.finish()

        channel = try await makeChannel()
        let head = try await exchange(channel, "HEAD /index.html HTTP/1.1\r\nHost: stats\r\n\r\n", head: true)
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.body, "")
        XCTAssertEqual(head.headers["content-length"].flatMap(Int.init), DashboardPage.bytes.count)
        _ = try? await channel.finish()
    }

    func testOtherMethodsAreRefused() async throws {
        let response = try await get("/stats", method: "POST")
        XCTAssertEqual(response.status, 405)
    }

    func testHeadHasTheHeadersButNoBody() async throws {
        for path in ["/healthz", "/readyz", "/stats", "/metrics"] {
            let channel = try await makeChannel()
            let response = try await exchange(channel, "HEAD \(path) HTTP/1.1\r\nHost: stats\r\n\r\n", head: true)
            XCTAssertEqual(response.status, 200, path)
            XCTAssertEqual(response.body, "", "HEAD \(path) sent a body")
            XCTAssertGreaterThan(response.headers["content-length"].flatMap(Int.init) ?? 0, 0, "HEAD \(path): Content-Length")
            let extra = try await channel.readOutbound(as: IOData.self)
            XCTAssertNil(extra, "HEAD \(path) wrote more after the head")
            _ = try? await channel.finish()
        }
    }

    func testKeepAliveAnswersSeveralRequestsAndConnectionCloseCloses() async throws {
        let channel = try await makeChannel()
        let first = try await exchange(channel, "GET /healthz HTTP/1.1\r\nHost: stats\r\n\r\n")
        XCTAssertEqual(first.status, 200)
        XCTAssertNil(first.headers["connection"])
        let second = try await exchange(channel, "GET /stats HTTP/1.1\r\nHost: stats\r\n\r\n")
        XCTAssertEqual(second.status, 200)
        XCTAssertTrue(channel.isActive, "a keep-alive connection was closed")
        let last = try await exchange(channel, "GET /readyz HTTP/1.1\r\nHost: stats\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(last.status, 200)
        XCTAssertEqual(last.headers["connection"], "close")
        try await channel.closeFuture.get()
    }

    // MARK: A real server

    func testStatsServerOnALoopbackPort() async throws {
        let server = StatsServer(
            collector: StatsCollector(readiness: readiness, source: fake.source()), readiness: readiness,
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let address = try await server.start(host: "127.0.0.1", port: 0)
        let port = try XCTUnwrap(address?.port)
        let health = try Self.request(port: port, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertTrue(health.hasPrefix("HTTP/1.1 200 OK\r\n"), health)
        XCTAssertTrue(health.hasSuffix("\r\n\r\nok\n"), health)
        readiness.set(.stopping)
        let ready = try Self.request(port: port, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        XCTAssertTrue(ready.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"), ready)
        let stats = try Self.request(port: port, "GET /stats HTTP/1.0\r\n\r\n")
        XCTAssertTrue(stats.hasPrefix("HTTP/1.0 200 OK\r\n"), stats)
        XCTAssertTrue(stats.contains("\"state\":\"stopping\""), stats)
        await server.shutdown()
    }

    /// One request on a blocking socket; the response up to the server's close.
    private static func request(port: Int, _ text: String) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
        let bytes = Array(text.utf8)
        guard send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw POSIXError(.EIO) }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &chunk, chunk.count, 0)
            if count <= 0 { break }
            response += chunk[0..<count]
        }
        return String(decoding: response, as: UTF8.self)
    }
}
