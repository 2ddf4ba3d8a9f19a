#ifndef PTPCHAT_CPREFETCH_SHIM_H
#define PTPCHAT_CPREFETCH_SHIM_H
// Cache prefetch hints, which Swift has no spelling for: RelayCore's RecentDeliveries asks for
// the line of a lookup or an insert it will make a few hundred instructions later (its table is
// larger than the caches, and both missed on nearly every message). Inlined into the caller;
// no-ops on compilers without __builtin_prefetch.
static inline void ptpchat_prefetch(const void *address) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(address, 0, 3);
#else
    (void)address;
#endif
}

// The same for a line about to be written: fetched ready to be modified, so that the store does
// not wait for it (a store that misses holds up every later locked instruction, which every
// Swift retain and release is).
static inline void ptpchat_prefetch_for_write(const void *address) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(address, 1, 3);
#else
    (void)address;
#endif
}
#endif
