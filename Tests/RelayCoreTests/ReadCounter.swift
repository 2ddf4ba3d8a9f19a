import NIOCore

/// Counts the `read()` calls that reach the head of the pipeline (the socket): what a handler that
/// withholds reads let through.
final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = NIOAny
    var reads = 0

    func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }
}
