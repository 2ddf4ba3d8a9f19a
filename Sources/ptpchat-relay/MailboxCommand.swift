import ArgumentParser
import Foundation
import Logging
import PTPProtocol
import RelayStore

/// `ptpchat-relay mailbox stats|list|purge`: look into and clean the offline buffer, also while
/// the relay runs (SQLite WAL: readers do not block it, a purge waits for its writer briefly).
struct MailboxCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mailbox",
        abstract: "Inspect or purge the stored (offline) messages.",
        subcommands: [Stats.self, List.self, Purge.self]
    )

    struct Location: ParsableArguments {
        @Option(name: .long, help: "The relay's data directory (default ./ptpchat-data).")
        var dataDir: String = "./ptpchat-data"

        @Flag(name: .long, help: "Print JSON instead of aligned text.")
        var json = false

        /// Reading commands open the store read-only when they can: they then never wait for
        /// the relay's writer.
        func open(readOnly: Bool = false) -> MessageStore {
            let path = MessageStore.path(inDataDirectory: dataDir)
            guard FileManager.default.fileExists(atPath: path) else {
                fail("store \(path): no store here (the relay creates it on first start)")
            }
            let logger = Logger(label: "ptpchat-mailbox")
            if readOnly, let store = try? MessageStore(path: path, settings: StoreSettings(), logger: logger, readOnly: true) {
                return store
            }
            do {
                return try MessageStore(path: path, settings: StoreSettings(), logger: logger)
            } catch {
                fail("\(error)")
            }
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Messages, bytes and oldest age per recipient.")
        @OptionGroup var location: Location

        func run() throws {
            let store = location.open(readOnly: true)
            defer { store.close() }
            let now = Date().timeIntervalSince1970
            let boxes: [MailboxSummary]
            let totals: (messages: Int, bytes: Int)
            do {
                boxes = try store.mailboxes()
                totals = try store.totals()
            } catch {
                fail("\(error)")
            }
            if location.json {
                let rows = boxes.map { box -> [String: Any] in
                    ["recipient": box.recipient.description, "messages": box.messages, "bytes": box.bytes,
                     "oldest_age_s": Int(now - box.oldest)]
                }
                printJSON(["recipients": rows, "messages": totals.messages, "bytes": totals.bytes])
            } else {
                printTable(
                    ["RECIPIENT", "MESSAGES", "BYTES", "OLDEST"],
                    boxes.map { [$0.recipient.description, "\($0.messages)", "\($0.bytes)", age(now - $0.oldest)] }
                        + [["total (\(boxes.count) recipients)", "\(totals.messages)", "\(totals.bytes)", ""]])
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stored messages in arrival order.")
        @OptionGroup var location: Location
        @Option(name: .long, help: "Only this recipient's messages (GUID).")
        var recipient: String?
        @Option(name: .long, help: "At most this many messages.")
        var limit = 1000

        func run() throws {
            let store = location.open(readOnly: true)
            defer { store.close() }
            let filter = recipient.map { parseGUID($0, option: "--recipient") }
            let now = Date().timeIntervalSince1970
            let messages: [StoredMessage]
            do {
                messages = try store.messages(for: filter, limit: limit)
            } catch {
                fail("\(error)")
            }
            if location.json {
                printJSON(messages.map { message -> [String: Any] in
                    ["seq": message.seq, "recipient": message.recipient.description, "msg_id": message.messageID.description,
                     "sender": message.sender.description, "bytes": message.frame.count, "age_s": Int(now - message.createdAt),
                     "attempts": message.attempts]
                })
            } else {
                printTable(
                    ["SEQ", "RECIPIENT", "MSG_ID", "SENDER", "BYTES", "AGE", "ATTEMPTS"],
                    messages.map {
                        ["\($0.seq)", $0.recipient.description, $0.messageID.description, $0.sender.description,
                         "\($0.frame.count)", age(now - $0.createdAt), "\($0.attempts)"]
                    })
            }
        }
    }

    struct Purge: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete stored messages by recipient and/or by age.")
        @OptionGroup var location: Location
        @Option(name: .long, help: "Delete this recipient's messages (GUID).")
        var recipient: String?
        @Option(name: .long, help: "Delete messages older than this many seconds.")
        var olderThan: Double?
        @Flag(name: .long, help: "Delete every stored message.")
        var all = false

        func validate() throws {
            if recipient == nil && olderThan == nil && !all {
                throw ValidationError("say what to purge: --recipient GUID, --older-than SECONDS, or --all")
            }
            if all && (recipient != nil || olderThan != nil) {
                throw ValidationError("--all goes alone")
            }
            if let olderThan, !(olderThan >= 0) {
                throw ValidationError("--older-than: '\(olderThan)' is not a number of seconds, 0 or more")
            }
        }

        func run() throws {
            let store = location.open()
            defer { store.close() }
            let filter = recipient.map { parseGUID($0, option: "--recipient") }
            let removed: Int
            do {
                removed = try store.purge(recipient: filter, olderThan: olderThan)
            } catch {
                fail("\(error)")
            }
            if location.json {
                printJSON(["purged": removed])
            } else {
                print("purged \(removed) message\(removed == 1 ? "" : "s")")
            }
        }
    }
}

private func parseGUID(_ text: String, option: String) -> GUID {
    guard let address = NodeAddress(text) else { fail("\(option): '\(text)' is not a node id") }
    return address.id
}

private func age(_ seconds: Double) -> String {
    let value = max(Int(seconds), 0)
    if value < 120 { return "\(value)s" }
    if value < 7200 { return "\(value / 60)m" }
    if value < 172_800 { return "\(value / 3600)h" }
    return "\(value / 86400)d"
}

private func printTable(_ header: [String], _ rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    for row in all {
        let cells = row.enumerated().map { column, cell in
            column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
        }
        print(cells.joined(separator: "  "))
    }
}

private func printJSON(_ value: Any) {
    let data = (try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys])) ?? Data("{}".utf8)
    print(String(decoding: data, as: UTF8.self))
}
