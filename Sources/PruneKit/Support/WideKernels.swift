#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CPruneKitShims

/// Whether the AVX2 + FMA kernels of the C shim (structure norms, SparseGPT's in-block updates)
/// may be used: the CPU and OS support them and PRUNEKIT_SIMD is not "baseline" (which forces the
/// baseline x86-64 loops, for comparison). Each kernel gives the baseline loop's result bit for
/// bit, so this changes speed only.
let wideKernels: Bool = {
    if let choice = getenv("PRUNEKIT_SIMD"), String(cString: choice) == "baseline" { return false }
    return prunekit_wide_supported() != 0
}()
