#ifndef PTPCHAT_CPREFETCH_SHIM_H
#define PTPCHAT_CPREFETCH_SHIM_H
// A cache prefetch hint, which Swift has no spelling for: RelayCore's RecentDeliveries asks for
// the line of a lookup it will make a few hundred instructions later (its table is larger than
// the caches, and the lookup missed on nearly every message). Inlined into the caller; a no-op on
// compilers without __builtin_prefetch.
static inline void ptpchat_prefetch(const void *address) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(address, 0, 3);
#else
    (void)address;
#endif
}
#endif
