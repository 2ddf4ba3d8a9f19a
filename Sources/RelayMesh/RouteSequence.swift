/// Sequence numbers of mesh routes (PROFILE.md section 9), compared with serial number arithmetic
/// (RFC 1982) so that they keep working after they wrap around 2^32.
///
/// Parity carries meaning: only a node's origin (the relay it is connected to) makes a new number,
/// and it is always even; an odd number says that a route at the even number below it broke.
public enum RouteSequence {
    /// True when `a` is newer than `b`: ahead of it by less than half the number space.
    /// Numbers exactly half the space apart are not ordered (RFC 1982 leaves them undefined);
    /// neither counts as newer, so neither can displace the other.
    @inlinable
    public static func isNewer(_ a: UInt32, than b: UInt32) -> Bool {
        a != b && a &- b < 0x8000_0000
    }

    /// The newer of two numbers (`a` when they are equal or unordered).
    @inlinable
    public static func newest(_ a: UInt32, _ b: UInt32) -> UInt32 {
        isNewer(b, than: a) ? b : a
    }

    /// The newer of two optional numbers; nil only when both are nil.
    @inlinable
    public static func newest(_ a: UInt32?, _ b: UInt32?) -> UInt32? {
        guard let a else { return b }
        guard let b else { return a }
        return newest(a, b)
    }

    /// The smallest even number newer than `seq`: what an origin takes when it learns that the
    /// mesh knows `seq` (wraps from 0xFFFF_FFFF to 0, which is newer).
    @inlinable
    public static func nextEven(after seq: UInt32) -> UInt32 {
        (seq | 1) &+ 1
    }

    /// The odd number that announces that a route at `seq` broke: `seq` + 1 for an even `seq`,
    /// `seq` itself when it already is the news of a break.
    @inlinable
    public static func broken(_ seq: UInt32) -> UInt32 {
        seq | 1
    }

    /// An odd number only ever travels with `ttl` 32.
    @inlinable
    public static func isBroken(_ seq: UInt32) -> Bool {
        seq & 1 == 1
    }
}
