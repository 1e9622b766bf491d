#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch

/// The number of worker threads when the caller asks for the default (0): one per CPU.
let defaultThreadCount: Int = {
    let cpus = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    return max(1, min(cpus, 64))
}()

/// Resolves a caller's thread request (0 = default) to a count in 1...work.
func resolveThreads(_ requested: Int, work: Int) -> Int {
    let wanted = requested == 0 ? defaultThreadCount : requested
    return max(1, min(wanted, work))
}

/// Runs `body(worker)` for worker in 0..<workers, concurrently. Work must be split by the
/// caller so that results do not depend on `workers`.
///
/// The closure may capture unsafe pointers: each worker only touches its own part of them,
/// which is what makes the unchecked sendability sound.
func parallelFor(workers: Int, _ body: (Int) -> Void) {
    if workers <= 1 {
        body(0)
        return
    }
    withoutActuallyEscaping(body) { escapable in
        nonisolated(unsafe) let work = escapable
        DispatchQueue.concurrentPerform(iterations: workers) { work($0) }
    }
}

/// The half-open range of items `worker` handles when `count` items are split into `workers`
/// contiguous parts of near-equal size.
@inline(__always)
func partition(_ count: Int, workers: Int, worker: Int) -> Range<Int> {
    let base = count / workers, extra = count % workers
    let start = worker * base + min(worker, extra)
    return start..<(start + base + (worker < extra ? 1 : 0))
}
