import NIOCore

extension RelayShard {
    /// Starts the shard's periodic work: ACK deadlines, ROUTING deltas, the HELLO refresh.
    func startTimers() {
        let ackSweep = TimeAmount.fromSeconds(min(max(configuration.timeouts.ack / 10, 0.05), 1))
        timers.append(
            eventLoop.scheduleRepeatedTask(initialDelay: ackSweep, delay: ackSweep) { [self] _ in
                expireAcks()
                flushAll()
            })
        let routingInterval = TimeAmount.fromSeconds(max(configuration.routing.interval, 0.01))
        timers.append(
            eventLoop.scheduleRepeatedTask(initialDelay: routingInterval, delay: routingInterval) { [self] _ in
                sendRoutingDelta()
            })
        timers.append(
            eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in
                retryStored()
            })
        if index == 0 {
            // The mesh's batches: a delta held back by `routing.interval` (an eighth of it for an
            // urgent one) goes out on the next tick; the whole table every `routing.refresh`.
            let meshTick = TimeAmount.fromSeconds(min(max(configuration.routing.interval / 8, 0.005), 0.05))
            timers.append(
                eventLoop.scheduleRepeatedTask(initialDelay: meshTick, delay: meshTick) { [self] _ in
                    flushMesh()
                    flushAll()
                })
            let refresh = TimeAmount.fromSeconds(max(configuration.routing.refresh, 0.1))
            timers.append(
                eventLoop.scheduleRepeatedTask(initialDelay: refresh, delay: refresh) { [self] _ in
                    refreshMesh()
                    flushAll()
                })
            let expiry = TimeAmount.fromSeconds(min(max(configuration.store.maxAge / 10, 1), 60))
            timers.append(
                eventLoop.scheduleRepeatedTask(initialDelay: .zero, delay: expiry) { [self] _ in
                    expireStored()
                })
        }
        if configuration.timeouts.helloRefresh > 0 {
            let refresh = TimeAmount.fromSeconds(configuration.timeouts.helloRefresh)
            timers.append(
                eventLoop.scheduleRepeatedTask(initialDelay: refresh, delay: refresh) { [self] _ in
                    sendHelloRefresh()
                })
        }
    }

    func stopTimers() {
        for timer in timers { timer.cancel() }
        timers.removeAll()
    }
}
