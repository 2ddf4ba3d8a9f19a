#define _GNU_SOURCE
#include <malloc.h>
#include <sched.h>

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
