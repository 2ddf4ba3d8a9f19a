/// A list of node ids that holds one id without a heap allocation: nearly every message has one
/// recipient, and the list is copied into every next hop's and every delivery's bookkeeping.
public struct Recipients: Sendable, Hashable, RandomAccessCollection, ExpressibleByArrayLiteral {
    @usableFromInline var single: GUID
    /// All ids when there are not exactly one.
    @usableFromInline var many: [GUID]?

    public init() {
        single = .zero
        many = []
    }

    public init(_ id: GUID) {
        single = id
        many = nil
    }

    public init(_ ids: some Sequence<GUID>) {
        let array = Array(ids)
        if array.count == 1 {
            single = array[0]
            many = nil
        } else {
            single = .zero
            many = array
        }
    }

    public init(arrayLiteral elements: GUID...) {
        self.init(elements)
    }

    /// The id when the list holds exactly one.
    @inlinable public var onlyOne: GUID? { many == nil ? single : nil }

    public var startIndex: Int { 0 }
    public var endIndex: Int { many?.count ?? 1 }

    public subscript(position: Int) -> GUID {
        if let many { return many[position] }
        precondition(position == 0, "index out of range")
        return single
    }

    public mutating func append(_ id: GUID) {
        if var array = many {
            many = nil
            array.append(id)
            many = array
        } else {
            many = [single, id]
        }
    }

    public static func == (lhs: Recipients, rhs: Recipients) -> Bool {
        lhs.elementsEqual(rhs)
    }

    public func hash(into hasher: inout Hasher) {
        for id in self { hasher.combine(id) }
    }
}
