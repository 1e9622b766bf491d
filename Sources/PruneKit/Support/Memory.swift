#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

private let hugePageSize = 2 << 20
private let hugePageThreshold = 8 << 20

/// A malloc-backed buffer that reports allocation failure as an error instead of trapping
/// (Swift's own allocation kills the host process on failure).
///
/// Swift may release an object right after its last use, so a function that hands `base` on
/// keeps the buffer alive to the end of its scope with `keepAlive` (below).
final class ScratchBuffer<Element> {
    let base: UnsafeMutablePointer<Element>
    let count: Int

    init(count: Int) throws(PruneKitError) {
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        guard !overflow else { throw .outOfMemory(bytes: bytes) }
        var raw: UnsafeMutableRawPointer?
        if bytes >= hugePageThreshold {
            // Large buffers on 2 MiB boundaries, marked for transparent huge pages: their first
            // touch then costs one fault per 2 MiB instead of one per 4 KiB (a 4096 x 4096 float
            // buffer: 32 faults instead of 16384). A hint; the kernel may ignore it.
            guard posix_memalign(&raw, hugePageSize, bytes) == 0, let r = raw else { throw .outOfMemory(bytes: bytes) }
            _ = madvise(r, (bytes + hugePageSize - 1) / hugePageSize * hugePageSize, MADV_HUGEPAGE)
        } else {
            raw = malloc(bytes)
        }
        guard let raw else { throw .outOfMemory(bytes: bytes) }
        base = raw.bindMemory(to: Element.self, capacity: max(count, 1))
        self.count = count
    }

    convenience init(repeating value: Element, count: Int) throws(PruneKitError) {
        try self.init(count: count)
        base.initialize(repeating: value, count: max(count, 1))
    }

    deinit { free(base) }
}

/// Keeps `values` alive up to this point: `defer { keepAlive(a, b) }` right after allocating
/// scratch buffers keeps them for the rest of the scope. Swift may release an object right after
/// its last use, which for a `ScratchBuffer` is the read of `base`, not the last use of the
/// pointer a kernel, OpenBLAS or a `MatrixView` got from it. This is the one place that rule
/// is written; every function that hands scratch pointers on states its buffers' lifetime once,
/// with this call. (The C layer uses it too, to let a handle's last reference go outside a lock.)
@inline(__always)
package func keepAlive<each T>(_ values: repeat each T) {
    repeat extendLifetime(each values)
}

/// `a * b`, or an invalid-shape error naming `what` if it overflows Int.
@inline(__always)
func checkedProduct(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws(PruneKitError) -> Int {
    let (product, overflow) = a.multipliedReportingOverflow(by: b)
    if overflow { throw .invalidShape("\(what()) is too large (\(a) x \(b) overflows)") }
    return product
}
