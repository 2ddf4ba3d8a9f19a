/// The classic BPF program that drops banned addresses' SYNs at a listening socket
/// (`SO_ATTACH_FILTER`): a pure value built from the ban list, installed by `ListenerBans`.
///
/// The kernel runs a listening TCP socket's filter on every segment of a handshake it receives
/// with the packet's data at the TCP header, and the IP header at `networkOffset`. An accepted
/// connection inherits the filter it had then: so the program looks at SYNs only (3 instructions
/// for any other segment), and a connection open before a ban is never cut by it.
///
/// Layout: the TCP flags (not a SYN: accept); the IP version; for IPv4 each banned address is
/// `jeq addr, 0, 1; ret 0`; for IPv6 each banned /64 is the two words of the prefix, each
/// `ld; jeq`, then `ret 0`. Every jump is short (at most 3), so the list has no limit but the
/// kernel's 4,096 instructions (`AddressBans.capacity`).
struct BanFilterProgram: Equatable, Sendable {
    /// One `struct sock_filter`.
    struct Instruction: Equatable, Sendable {
        var code: UInt16
        var jumpIfTrue: UInt8
        var jumpIfFalse: UInt8
        var k: UInt32
    }

    // The opcodes used (linux/filter.h: BPF_LD|BPF_W|BPF_ABS, ...).
    static let loadWord: UInt16 = 0x20
    static let loadByte: UInt16 = 0x30
    static let andConstant: UInt16 = 0x54
    static let jumpIfEqual: UInt16 = 0x15
    static let jumpIfSet: UInt16 = 0x45
    static let jumpAlways: UInt16 = 0x05
    static let returnConstant: UInt16 = 0x06
    /// `SKF_NET_OFF`: loads from here on read the IP header.
    static let networkOffset: Int32 = -0x100000
    static let accept: UInt32 = 0xFFFF_FFFF
    static let drop: UInt32 = 0
    /// The kernel's limit (`BPF_MAXINSNS`).
    static let maximumLength = 4096

    let instructions: [Instruction]

    init(banning keys: some Sequence<AddressKey>) {
        var v4: [UInt32] = []
        var v6: [UInt64] = []
        for key in keys {
            switch key {
            case .v4(let address): v4.append(address)
            case .v6(let prefix): v6.append(prefix)
            }
        }
        // Sorted: the same list gives the same program (no reinstall when nothing changed).
        v4.sort()
        v6.sort()

        func op(_ code: UInt16, _ k: UInt32 = 0, _ jumpIfTrue: UInt8 = 0, _ jumpIfFalse: UInt8 = 0) -> Instruction {
            Instruction(code: code, jumpIfTrue: jumpIfTrue, jumpIfFalse: jumpIfFalse, k: k)
        }
        func network(_ offset: Int32) -> UInt32 { UInt32(bitPattern: Self.networkOffset + offset) }

        var program: [Instruction] = [
            op(Self.loadByte, 13),  // the TCP header's flags
            op(Self.jumpIfSet, 0x02, 1, 0),  // SYN
            op(Self.returnConstant, Self.accept),
            op(Self.loadByte, network(0)),
            op(Self.andConstant, 0xF0),
            op(Self.jumpIfEqual, 0x40, 1, 0),
        ]
        // Not IPv4: to the IPv6 part, however long the IPv4 part is.
        let jumpToV6 = program.count
        program.append(op(Self.jumpAlways))
        program.append(op(Self.loadWord, network(12)))  // IPv4 source address
        for address in v4 {
            program.append(op(Self.jumpIfEqual, address, 0, 1))
            program.append(op(Self.returnConstant, Self.drop))
        }
        program.append(op(Self.returnConstant, Self.accept))
        program[jumpToV6].k = UInt32(program.count - jumpToV6 - 1)
        // A still holds the version nibble.
        program.append(op(Self.jumpIfEqual, 0x60, 1, 0))
        program.append(op(Self.returnConstant, Self.accept))
        for prefix in v6 {
            program.append(op(Self.loadWord, network(8)))  // the source address's first word
            program.append(op(Self.jumpIfEqual, UInt32(truncatingIfNeeded: prefix >> 32), 0, 3))
            program.append(op(Self.loadWord, network(12)))
            program.append(op(Self.jumpIfEqual, UInt32(truncatingIfNeeded: prefix), 0, 1))
            program.append(op(Self.returnConstant, Self.drop))
        }
        program.append(op(Self.returnConstant, Self.accept))
        instructions = program
    }
}
