import CLinuxExtras

/// Which event loop serves an accepted connection, given the CPUs the relay may run on now.
///
/// The relay starts one event loop per CPU, and the kernel spreads new connections over the
/// loops' listening sockets. When the relay may later run on fewer CPUs than it has loops
/// (`taskset -a -p`, a cpuset cgroup shrunk, a container moved), loops share a CPU and take turns
/// on it: each message between clients of two such loops costs a thread switch (the other loop
/// is woken through its eventfd and runs after this one sleeps), where one loop would write it at
/// once. With the relay and its clients on one CPU that halved the messages a second of a pair of
/// clients (`lat` in Benchmarks/compare.sh: 0.53 of the C baseline against 0.78 on one loop).
/// So new connections go to the first `usableCPUs` loops; those already open stay where they are
/// (a channel cannot change loops), and once the CPUs are back every loop takes its own again.
struct LoopPlacement: Equatable {
    /// The relay's event loops.
    let loops: Int
    /// The CPUs the accepting thread may run on now (`UsableCPUs.ofThisThread`).
    let usableCPUs: Int

    /// Whether some loops get no new connections now.
    var isNarrowed: Bool { usableCPUs > 0 && usableCPUs < loops }

    /// The loop to serve a connection the kernel gave to loop `index`: that loop while there is a
    /// CPU for every loop; otherwise one of the first `usableCPUs`, the loops beyond them spread
    /// evenly over those.
    func loop(forAcceptedOn index: Int) -> Int {
        guard isNarrowed else { return index }
        return index % usableCPUs
    }
}

enum UsableCPUs {
    /// The CPUs the calling thread may run on now (`sched_getaffinity`; `taskset -a` sets every
    /// thread of the relay alike), or nil where the kernel does not say. One system call.
    static func ofThisThread() -> Int? {
        let count = ptpchat_usable_cpus_of_this_thread()
        return count > 0 ? Int(count) : nil
    }
}
