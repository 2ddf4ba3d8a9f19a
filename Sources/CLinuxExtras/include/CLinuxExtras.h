#ifndef PTPCHAT_CTHREADAFFINITY_H
#define PTPCHAT_CTHREADAFFINITY_H
// Linux calls Swift's Glibc module does not export (GNU extensions): the CPUs a thread may run on
// (sched_getaffinity: the relay places its new connections on as many event loops as it has
// CPUs), and the size of an allocation (malloc_usable_size: the bound of a scan of a NIO channel's
// memory, ChannelSocket), and glibc's heap trimming (mallopt).

/// How many CPUs the calling thread may run on now; -1 if the kernel does not say.
int ptpchat_usable_cpus_of_this_thread(void);

/// Lets the calling thread run on `cpu` only, or, with -1, on every CPU its cgroup allows
/// (what `taskset` does to a process; the tests do it to the relay's loops). 0 or -1 (errno).
int ptpchat_set_cpu_of_this_thread(int cpu);

/// The usable size of the block `pointer` (from malloc) starts.
unsigned long ptpchat_allocation_size(const void *pointer);

/// Has glibc keep up to `trim_threshold` bytes of freed memory at the top of each heap instead of
/// giving the pages back, and serve blocks under `mmap_threshold` from the heap. 1 when set, 0
/// when the environment sets glibc's own (MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_,
/// GLIBC_TUNABLES) or this is not glibc, -1 when glibc refused.
int ptpchat_keep_freed_heap_memory(unsigned long trim_threshold, unsigned long mmap_threshold);

#endif
