#ifndef PTPCHAT_CPREFETCH_SHIM_H
#define PTPCHAT_CPREFETCH_SHIM_H
// Cache prefetch hints, which Swift has no spelling for: RelayCore's RecentDeliveries asks for
// the line of a lookup or an insert it will make a few hundred instructions later (its table is
// larger than the caches, and both missed on nearly every message). Inlined into the caller;
// no-ops on compilers without __builtin_prefetch.
#if defined(__GNUC__) || defined(__clang__)
#define PTPCHAT_PREFETCH(address, forWriting) __builtin_prefetch((address), (forWriting), 3)
#else
#define PTPCHAT_PREFETCH(address, forWriting) ((void)(address))
#endif

static inline void ptpchat_prefetch(const void *address) { PTPCHAT_PREFETCH(address, 0); }

// For a line about to be written: fetched ready to be modified, so that the store does not wait
// for it (a store that misses holds up every later locked instruction, which every Swift retain
// and release is).
static inline void ptpchat_prefetch_for_write(const void *address) { PTPCHAT_PREFETCH(address, 1); }
#endif
