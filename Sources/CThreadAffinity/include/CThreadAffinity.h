#ifndef PTPCHAT_CTHREADAFFINITY_H
#define PTPCHAT_CTHREADAFFINITY_H
// The CPUs a thread may run on (sched_getaffinity, a GNU extension Swift's Glibc module does not
// export): the relay places its new connections on as many event loops as it has CPUs.

/// How many CPUs the calling thread may run on now; -1 if the kernel does not say.
int ptpchat_usable_cpus_of_this_thread(void);

/// Lets the calling thread run on `cpu` only, or, with -1, on every CPU its cgroup allows
/// (what `taskset` does to a process; the tests do it to the relay's loops). 0 or -1 (errno).
int ptpchat_set_cpu_of_this_thread(int cpu);

#endif
