import RelayConfig
import RelayStore

extension StoreSettings {
    /// The `store.*` keys of the relay's configuration.
    public init(_ store: RelayConfiguration.Store) {
        self.init()
        sync = store.sync == .full ? .full : .normal
        maxAttempts = store.maxAttempts
        perRecipientMessages = store.perRecipientMessages
        perRecipientBytes = store.perRecipientBytes
        perSenderMessages = store.perSenderMessages
        maxBytes = store.maxBytes
        maxAge = store.maxAge
    }
}
