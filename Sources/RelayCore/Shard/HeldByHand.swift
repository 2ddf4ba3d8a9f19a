/// A strong reference held by hand: reading it for every frame takes no retain and release
/// (`with`), where a plain optional property took both. What `Connection` keeps of the last ACK
/// and the last MESSAGE a client sent (`RepeatedAck`, `RepeatedMessage`). Not copyable: a copy
/// would release the object twice.
struct HeldByHand<Object: AnyObject>: ~Copyable {
    private var reference: Unmanaged<Object>?

    init() {}

    var object: Object? {
        get { reference?.takeUnretainedValue() }
        set {
            reference?.release()
            reference = newValue.map { .passRetained($0) }
        }
    }

    /// `body` with the object, lent without reference counting; nil when there is none. `body`
    /// must not set `object`.
    @inline(__always)
    func with<Result>(_ body: (Object) -> Result?) -> Result? {
        guard let reference else { return nil }
        return reference._withUnsafeGuaranteedRef(body)
    }

    deinit {
        reference?.release()
    }
}
