// Compiler builtins the Swift core needs and Swift does not expose. A C shim: no Swift API.
#ifndef PRUNEKIT_SHIMS_H
#define PRUNEKIT_SHIMS_H
#include <stddef.h>

/// Asks for the cache lines of [address, address + bytes) ahead of use (a hint; never faults).
static inline void prunekit_prefetch(const void *address, size_t bytes) {
    const char *p = (const char *)address;
    for (size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(p + offset, 0, 3);
}
#endif
