import PTPProtocol

/// Why a command failed; each kind has its own exit status.
enum ClientError: Error, CustomStringConvertible {
    /// The relay refused a frame with a NACK.
    case refused(verb: String, reason: String?, stored: Bool?)
    /// The TCP connection could not be opened.
    case connectFailed(String, endpoint: Endpoint)
    /// The relay closed the connection, or it broke.
    case connectionLost(String)
    /// No answer within the time allowed.
    case timedOut(String)

    static let refusedExitCode: Int32 = 1
    static let connectionExitCode: Int32 = 2
    static let timeoutExitCode: Int32 = 3

    var exitCode: Int32 {
        switch self {
        case .refused: Self.refusedExitCode
        case .connectFailed, .connectionLost: Self.connectionExitCode
        case .timedOut: Self.timeoutExitCode
        }
    }

    var description: String {
        switch self {
        case .refused(let verb, let reason, let stored):
            let what = verb == "HELLO" ? "the connection (HELLO)" : "the \(verb)"
            return "the relay refused \(what): \(NackReasonText.sentence(reason, stored: stored == true))"
                + " (NACK \(reason ?? "without a reason"))"
        case .connectFailed(let why, let endpoint):
            return "cannot connect to \(endpoint): \(why)"
        case .connectionLost(let why):
            return "connection lost: \(why)"
        case .timedOut(let what):
            return "timed out \(what)"
        }
    }
}
