#define _GNU_SOURCE
#include <malloc.h>
#include <sched.h>
#include <stdlib.h>

#include "CLinuxExtras.h"

int ptpchat_usable_cpus_of_this_thread(void) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    return CPU_COUNT(&set);
#else
    return -1;
#endif
}

int ptpchat_set_cpu_of_this_thread(int cpu) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu >= 0) {
        CPU_SET(cpu, &set);
    } else {
        // The kernel keeps the CPUs of this set the thread's cpuset allows.
        for (int each = 0; each < CPU_SETSIZE; each++) CPU_SET(each, &set);
    }
    return sched_setaffinity(0, sizeof set, &set);
#else
    (void)cpu;
    return -1;
#endif
}

unsigned long ptpchat_allocation_size(const void *pointer) {
    return malloc_usable_size((void *)pointer);
}

int ptpchat_keep_freed_heap_memory(unsigned long trim_threshold, unsigned long mmap_threshold) {
#if defined(__linux__) && defined(__GLIBC__)
    // Settings the operator gave glibc in the environment (read at start) are left as they are.
    if (getenv("MALLOC_TRIM_THRESHOLD_") || getenv("MALLOC_MMAP_THRESHOLD_") || getenv("GLIBC_TUNABLES")) return 0;
    if (mallopt(M_MMAP_THRESHOLD, (int)mmap_threshold) != 1) return -1;
    if (mallopt(M_TRIM_THRESHOLD, (int)trim_threshold) != 1) return -1;
    return 1;
#else
    (void)trim_threshold;
    (void)mmap_threshold;
    return 0;
#endif
}
