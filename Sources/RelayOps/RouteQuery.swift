import Foundation
import RelayCore

/// What `GET /routes` may ask for in its query: `limit=N` (at most N routes in `routes`) and
/// `match=TEXT` (only routes whose `name@GUID` contains TEXT, letter case ignored). The dashboard
/// asks for the rows it shows, so a relay with 100,000 routes does not serialise all of them every
/// five seconds for each open page.
public struct RouteQuery: Sendable, Equatable {
    public var limit: Int?
    public var match: String?

    public init(limit: Int? = nil, match: String? = nil) {
        self.limit = limit
        self.match = match
    }

    /// A query string's reason to be refused (400).
    public struct Invalid: Error, Equatable {
        public var reason: String
    }

    /// From the request's URI (`/routes?limit=200&match=bob`); other parameters are ignored.
    public init(uri: String) throws(Invalid) {
        self.init()
        guard let items = URLComponents(string: uri)?.queryItems else { return }
        for item in items {
            switch item.name {
            case "limit":
                guard let text = item.value, let value = Int(text), value >= 0 else {
                    throw Invalid(reason: "limit must be a whole number, 0 or more (not \(item.value ?? "empty"))")
                }
                limit = value
            case "match":
                let text = item.value ?? ""
                match = text.isEmpty ? nil : text
            default:
                continue
            }
        }
    }

    /// The rows it selects, in their order, and how many matched in all.
    public func select(_ rows: [RouteRow]) -> (rows: [RouteRow], matched: Int) {
        var matching = rows
        if let match {
            matching = rows.filter { $0.node.range(of: match, options: .caseInsensitive) != nil }
        }
        let matched = matching.count
        if let limit, limit < matching.count { matching.removeSubrange(limit...) }
        return (matching, matched)
    }
}
