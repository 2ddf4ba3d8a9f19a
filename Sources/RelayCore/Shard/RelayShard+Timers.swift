import NIOCore
import RelayConfig

extension RelayShard {
    /// Starts the shard's periodic work: ACK deadlines, idle connections and keepalives, ROUTING
    /// deltas, the HELLO refresh.
    func startTimers() {
        let idleSweep = Self.idleSweepInterval(configuration.timeouts)
        timers.append(
            eventLoop.scheduleRepeatedTask(initialDelay: idleSweep, delay: idleSweep) { [self] _ in
                sweepIdle(now: .now())
                flushAll()
            })
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

extension RelayShard {
    /// How often the idle sweep runs: an eighth of the shorter of `timeouts.idle` and
    /// `timeouts.keepalive`, between 20 ms and 1 s (a connection is closed at most two sweeps late).
    static func idleSweepInterval(_ timeouts: RelayConfiguration.Timeouts) -> TimeAmount {
        .fromSeconds(min(max(min(timeouts.idle, timeouts.keepalive, timeouts.handshake) / 8, 0.02), 1))
    }

    /// `timeouts.idle` and `timeouts.keepalive` for every open connection, read from the settings
    /// in force at each sweep, so a reload applies them to open connections too: a connection that
    /// sent nothing (not even a keepalive) for `idle` is closed (`idle_timeout`); one the relay
    /// flushed nothing to for `keepalive` gets a keepalive frame. Replaces a per-connection
    /// `IdleStateHandler`, which fixed both at accept, read the clock at every read burst and
    /// allocated a promise per write.
    ///
    /// It also closes a connection that has not said HELLO within the `timeouts.handshake` in
    /// force when it was opened (`handshake_timeout`), late by at most one sweep (an eighth of the
    /// timeout, at most a second). A task scheduled and cancelled per connection cost about 6,600
    /// instructions of a handshake's 172,000 (`Benchmarks/instructions-hs.sh`).
    func sweepIdle(now: NIODeadline) {
        let idle = TimeAmount.fromSeconds(configuration.timeouts.idle)
        let keepalive = TimeAmount.fromSeconds(configuration.timeouts.keepalive)
        for connection in connections.values where connection.phase != .closing {
            if connection.phase == .awaitingHello, now >= connection.helloDeadline {
                counters.drop(.handshakeTimeout)
                close(connection, reason: "no HELLO within \(configuration.timeouts.handshake) s")
                continue
            }
            if !connection.readSinceSweep && !connection.wroteSinceSweep {
                // Quiet for a whole sweep interval: what it sized for a busy spell goes back.
                connection.releaseIdleStorage()
            }
            if connection.readSinceSweep {
                connection.readSinceSweep = false
                connection.lastReadAt = now
            }
            if connection.wroteSinceSweep {
                connection.wroteSinceSweep = false
                connection.lastWriteAt = now
            }
            if idle > .zero && now - connection.lastReadAt >= idle {
                counters.drop(.idleTimeout)
                close(connection, reason: "nothing received for \(configuration.timeouts.idle) s")
            } else if keepalive > .zero && now - connection.lastWriteAt >= keepalive {
                write(to: connection) { $0.writeKeepalive() }
            }
        }
    }
}
