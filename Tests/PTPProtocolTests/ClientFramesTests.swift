import XCTest

@testable import PTPProtocol

/// The frames of CLIENT-FRAMES.md, byte for byte.
enum ClientFrames {
    static let hello = #"{"msg_type":"HELLO","msg_data":{"version":"ptpchat-client; 0.0","attributes":{"node_type":"string"}},"flood":false,"msg_id":"3fa0f96f-c529-4e62-90dc-e9ec6622a9ae","ttl":1,"sender_id":"LocalNode@0b370041-cd1e-40ac-ac59-0136bba850fe","target_id":null}"#

    static let labelledChat = #"{"msg_data":{"attachment":null,"channel":"Test Channel","channel_id":"82ae2035-55b8-4223-af24-c538731d6119","message":"hi from client","msg_id":"c6a856bb-9057-4318-bca9-d374ecb6ad02","recipient":[{"node_id":"0b370041-cd1e-40ac-ac59-0136bba850fe"},{"node_id":"5f715c17-4a41-482a-ab1f-45fa2cdd702b"}],"timestamp":"2016-05-04T13:23:29.123456+01:00"},"flood":false,"msg_type":"HELLO","msg_id":"00000000-0000-0000-0000-000000000000","ttl":0,"sender_id":"LocalNode@0b370041-cd1e-40ac-ac59-0136bba850fe","target_id":null}"#

    static let connect = #"{"msg_type":"CONNECT","msg_data":{"dst":null,"dst_node_id":"5f715c17-4a41-482a-ab1f-45fa2cdd702b","src":":34567","src_node_id":"0b370041-cd1e-40ac-ac59-0136bba850fe"},"flood":false,"msg_id":"00000000-0000-0000-0000-000000000000","ttl":32,"sender_id":null,"target_id":null}"#

    static let ack = #"{"msg_data":{"msg_id":"11111111-2222-3333-4444-555555555555"},"msg_type":"ACK","flood":false,"msg_id":"00000000-0000-0000-0000-000000000000","ttl":1,"sender_id":null,"target_id":null}"#

    static let channel = #"{"msg_type":"CHANNEL","msg_data":{"channel":"Test Channel","channel_id":"82ae2035-55b8-4223-af24-c538731d6119","closed":false,"members":[{"node_id":"0b370041-cd1e-40ac-ac59-0136bba850fe"}],"msg_id":"0f44bfaf-5dd5-4941-bacc-3f2a91de3c80"},"flood":true,"msg_id":"00000000-0000-0000-0000-000000000000","ttl":32,"sender_id":"LocalNode@0b370041-cd1e-40ac-ac59-0136bba850fe","target_id":null}"#

    static let join = #"{"msg_data":{"channel":"Test Channel","channel_id":"82ae2035-55b8-4223-af24-c538731d6119","msg_id":"0fd7b87c-e9bc-4404-9fc9-fe5537f7c8ae"},"flood":true,"msg_type":"JOIN","msg_id":"ddaf46ce-8b60-49fe-8e3e-6df4c0b709a2","ttl":32,"sender_id":"LocalNode@0b370041-cd1e-40ac-ac59-0136bba850fe","target_id":null}"#

    static let routing = #"{"msg_data":{"nodes":[{"node_id":"testing@5f715c17-4a41-482a-ab1f-45fa2cdd702b","ttl":1}]},"flood":false,"msg_type":"ROUTING","msg_id":"a3c6c348-376b-4d41-86e8-17e85a6eed99","ttl":1,"sender_id":"LocalNode@0b370041-cd1e-40ac-ac59-0136bba850fe","target_id":null}"#

    /// "What it accepts from a relay": the relay HELLO and a relayed MESSAGE.
    static let relayHello = #"{"msg_type":"HELLO","msg_id":"6b1f0c2a-3d4e-4f50-8a61-b2c3d4e5f607","ttl":1,"flood":false,"sender_id":"relay@9d2b7c1e-4f3a-4b5c-8d6e-7f8091a2b3c4","target_id":null,"msg_data":{"node_id":"9d2b7c1e-4f3a-4b5c-8d6e-7f8091a2b3c4","version":"ptpchat-relay 0.1","attributes":{"node_type":"server"}}}"#

    static let relayedMessage = #"{"msg_type":"MESSAGE","msg_id":"6b1f0c2a-3d4e-4f50-8a61-b2c3d4e5f60f","ttl":31,"flood":false,"sender_id":"bob@11111111-1111-4111-8111-111111111111","target_id":null,"msg_data":{"recipient":[{"node_id":"0b370041-cd1e-40ac-ac59-0136bba850fe"}],"timestamp":"2016-05-04T13:23:29+01:00","channel":"Test Channel","channel_id":"82ae2035-55b8-4223-af24-c538731d6119","message":"aGk=","msg_id":"6b1f0c2a-3d4e-4f50-8a61-b2c3d4e5f60f","attachment":[]}}"#
}

final class ClientFramesTests: XCTestCase {
    private let localNode = NodeAddress(id: IDs.guid(IDs.a), name: "LocalNode")

    func testHelloSizeAsDocumented() {
        XCTAssertEqual(ClientFrames.hello.utf8.count, 249)
    }

    func testHello() {
        for handshakeDone in [false, true] {
            guard let envelope = expectValid(ClientFrames.hello, handshakeDone: handshakeDone) else { continue }
            XCTAssertEqual(envelope.verb, .hello)
            XCTAssertFalse(envelope.isLabelledChat)
            XCTAssertEqual(envelope.sender, localNode)
            XCTAssertNil(envelope.dataNodeID)
            XCTAssertEqual(envelope.origin, localNode)
            XCTAssertFalse(envelope.declaresServer)
            XCTAssertEqual(envelope.ttl, 1)
            XCTAssertFalse(envelope.flood)
            XCTAssertEqual(envelope.headMessageID, IDs.guid("3fa0f96f-c529-4e62-90dc-e9ec6622a9ae"))
            XCTAssertEqual(envelope.messageID, IDs.guid("3fa0f96f-c529-4e62-90dc-e9ec6622a9ae"))
            XCTAssertNil(envelope.target)
        }
    }

    func testLabelledChatAfterHandshakeIsMessage() {
        guard let envelope = expectValid(ClientFrames.labelledChat, handshakeDone: true) else { return }
        XCTAssertEqual(envelope.verb, .message)
        XCTAssertTrue(envelope.isLabelledChat)
        XCTAssertEqual(envelope.ttl, 0)
        XCTAssertFalse(envelope.flood)
        XCTAssertEqual(envelope.messageID, IDs.guid(IDs.message))
        XCTAssertNil(envelope.headMessageID)
        XCTAssertEqual(envelope.recipients, [IDs.guid(IDs.a), IDs.guid(IDs.b)])
        XCTAssertEqual(envelope.sender, localNode)
        XCTAssertEqual(envelope.origin?.id, IDs.guid(IDs.a))
    }

    func testLabelledChatDuringHandshakeIsHello() {
        guard let envelope = expectValid(ClientFrames.labelledChat, handshakeDone: false) else { return }
        XCTAssertEqual(envelope.verb, .hello)
        XCTAssertFalse(envelope.isLabelledChat)
        XCTAssertEqual(envelope.origin, localNode)
    }

    func testConnect() {
        guard let envelope = expectValid(ClientFrames.connect) else { return }
        XCTAssertEqual(envelope.verb, .connect)
        XCTAssertEqual(envelope.connectSource, IDs.guid(IDs.a))
        XCTAssertEqual(envelope.connectDestination, IDs.guid(IDs.b))
        XCTAssertNil(envelope.sender)
        XCTAssertNil(envelope.messageID)
        XCTAssertEqual(envelope.ttl, 32)
        XCTAssertFalse(envelope.flood)
    }

    func testAckWithoutNodeID() {
        guard let envelope = expectValid(ClientFrames.ack) else { return }
        XCTAssertEqual(envelope.verb, .ack)
        XCTAssertEqual(envelope.messageID, IDs.guid("11111111-2222-3333-4444-555555555555"))
        XCTAssertNil(envelope.origin)
        XCTAssertEqual(envelope.ttl, 1)
    }

    func testChannel() {
        guard let envelope = expectValid(ClientFrames.channel) else { return }
        XCTAssertEqual(envelope.verb, .channel)
        XCTAssertTrue(envelope.flood)
        XCTAssertEqual(envelope.ttl, 32)
        XCTAssertEqual(envelope.channelID, IDs.channel)
        XCTAssertEqual(envelope.messageID, IDs.guid("0f44bfaf-5dd5-4941-bacc-3f2a91de3c80"))
        XCTAssertEqual(envelope.floodID, IDs.guid("0f44bfaf-5dd5-4941-bacc-3f2a91de3c80"))
        XCTAssertEqual(envelope.origin, localNode)
    }

    func testJoin() {
        guard let envelope = expectValid(ClientFrames.join) else { return }
        XCTAssertEqual(envelope.verb, .join)
        XCTAssertTrue(envelope.flood)
        XCTAssertEqual(envelope.messageID, IDs.guid("0fd7b87c-e9bc-4404-9fc9-fe5537f7c8ae"))
        XCTAssertEqual(envelope.headMessageID, IDs.guid(IDs.head))
        XCTAssertEqual(envelope.origin, localNode)
    }

    func testRouting() {
        guard let envelope = expectValid(ClientFrames.routing) else { return }
        XCTAssertEqual(envelope.verb, .routing)
        XCTAssertEqual(envelope.ttl, 1)
        XCTAssertEqual(envelope.messageID, IDs.guid("a3c6c348-376b-4d41-86e8-17e85a6eed99"))
        XCTAssertEqual(envelope.origin, localNode)
    }

    func testFramesTheClientAccepts() {
        let hello = expectValid(ClientFrames.relayHello, handshakeDone: false)
        XCTAssertEqual(hello?.verb, .hello)
        XCTAssertEqual(hello?.declaresServer, true)
        XCTAssertEqual(hello?.origin?.id, IDs.guid(IDs.relay))
        let message = expectValid(ClientFrames.relayedMessage)
        XCTAssertEqual(message?.verb, .message)
        XCTAssertEqual(message?.ttl, 31)
        XCTAssertEqual(message?.recipients, [IDs.guid(IDs.a)])
        XCTAssertEqual(message?.sender?.name, "bob")
    }

    func testClientFramesAreCompactASCII() {
        for text in [ClientFrames.hello, ClientFrames.labelledChat, ClientFrames.connect, ClientFrames.ack,
                     ClientFrames.channel, ClientFrames.join, ClientFrames.routing] {
            var tape = JSONTape()
            Array(text.utf8).withUnsafeBytes { raw in
                do throws(JSONTape.ParseError) {
                    try tape.parse(raw)
                } catch {
                    XCTFail("\(error)")
                }
            }
            XCTAssertTrue(tape.isCompactASCII, text)
        }
    }
}
