import NIOCore
import NIOPosix
import PTPProtocol
import RelayStore

/// How the shards reach the offline buffer: writes go to the store's single writer (completions
/// come on the writer's thread, after the commit), reads run off the event loop.
public protocol StoreAccess: Sendable {
    func submit(_ write: StoreWriter.Write)
    /// Whether the store may hold messages for `recipient`, without a read (false: it holds none).
    /// Asked on the event loop by every HELLO: must be cheap, and never false for a recipient with rows.
    func mayHoldMessages(for recipient: GUID) -> Bool
    /// The recipient's messages due now, in arrival order, and whether it has any stored at all.
    func due(for recipient: GUID, now: Double, on eventLoop: EventLoop) -> EventLoopFuture<(messages: [StoredMessage], more: Bool)>
    /// Which of `nodes` the store holds messages for (a route to them appeared): never misses one,
    /// may name one whose rows are gone.
    func recipients(withMessagesAmong nodes: [GUID], on eventLoop: EventLoop) -> EventLoopFuture<[GUID]>
    /// Messages and bytes in the whole store.
    func totals() throws -> (messages: Int, bytes: Int)
    /// Commits what was submitted and stops the writer.
    func close()
}

extension StoreAccess {
    public func totals() throws -> (messages: Int, bytes: Int) { (0, 0) }
    /// A store that keeps no index of its recipients: always read.
    public func mayHoldMessages(for recipient: GUID) -> Bool { true }
}

/// The SQLite store, read on a small thread pool.
public final class ThreadedStoreAccess: StoreAccess {
    public let store: MessageStore
    private let readers: NIOThreadPool

    public init(store: MessageStore, readerThreads: Int = 2) {
        self.store = store
        self.readers = NIOThreadPool(numberOfThreads: readerThreads)
        readers.start()
    }

    public func submit(_ write: StoreWriter.Write) {
        store.writer.submit(write)
    }

    public func mayHoldMessages(for recipient: GUID) -> Bool {
        store.storedRecipients.contains(recipient)
    }

    public func due(for recipient: GUID, now: Double, on eventLoop: EventLoop) -> EventLoopFuture<(messages: [StoredMessage], more: Bool)> {
        let store = self.store
        return readers.runIfActive(eventLoop: eventLoop) {
            (try store.due(for: recipient, now: now), try store.hasMessages(for: recipient))
        }
    }

    /// From the in-memory `StoredRecipients`, not a read of the whole mailbox table: a recipient
    /// listed with no row left (a purge by the `mailbox` command) costs one read that finds nothing.
    public func recipients(withMessagesAmong nodes: [GUID], on eventLoop: EventLoop) -> EventLoopFuture<[GUID]> {
        let listed = store.storedRecipients.all
        return eventLoop.makeSucceededFuture(nodes.filter(listed.contains))
    }

    public func totals() throws -> (messages: Int, bytes: Int) {
        try store.totals()
    }

    public func close() {
        try? readers.syncShutdownGracefully()
        store.close()
    }
}
