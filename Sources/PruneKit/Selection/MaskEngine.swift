/// Per-worker scratch for scoring and selecting rows of up to `cols` entries.
final class RowScratch {
    private let scoreBuffer: ScratchBuffer<Float>
    private let keyBuffer: ScratchBuffer<UInt32>
    let convert: ScratchBuffer<Float>
    let candidates: ScratchBuffer<UInt64>
    let bins: ScratchBuffer<UInt32>
    var scores: UnsafeMutablePointer<Float> { scoreBuffer.base }
    var keys: UnsafeMutablePointer<UInt32> { keyBuffer.base }

    init(cols: Int) throws(PruneKitError) {
        scoreBuffer = try ScratchBuffer(count: cols)
        convert = try ScratchBuffer(count: 2 * cols)
        keyBuffer = try ScratchBuffer(count: cols)
        candidates = try ScratchBuffer(count: cols)
        bins = try ScratchBuffer(count: RowSelector.binCount)
    }

    /// Scores and keys of a row; returns the kernel's finiteness word and the key range.
    @inline(__always)
    @discardableResult
    func keys(of kernel: ScoreKernel, row: Int) -> (worst: UInt32, lowest: UInt32, highest: UInt32) {
        let worst = kernel.score(row: row, count: kernel.cols, into: scores, scratch: convert.base)
        let (lowest, highest) = computeKeys(scores, keys, count: kernel.cols)
        return (worst, lowest, highest)
    }
}

/// Allocates one scratch per worker before any work starts, so allocation failure is an
/// error that precedes every write.
func makeScratches(workers: Int, cols: Int) throws(PruneKitError) -> [RowScratch] {
    var made: [RowScratch] = []
    for _ in 0..<workers { made.append(try RowScratch(cols: cols)) }
    return made
}

let nonFiniteWord: UInt32 = 0x7F80_0000

/// Rows that were found non-finite, one slot per worker; the first in order wins.
struct FirstBadRow {
    var rows: [Int]
    init(workers: Int) { rows = Array(repeating: Int.max, count: workers) }
    var first: Int? { rows.min().flatMap { $0 == Int.max ? nil : $0 } }
}

enum MaskEngine {
    /// Scores of every entry, dense row-major into `out`; validated before anything is written.
    static func scores(kernel: ScoreKernel, threads: Int, into out: UnsafeMutablePointer<Float>) throws(PruneKitError) {
        let workers = resolveThreads(threads, work: kernel.rows)
        let scratches = try makeScratches(workers: workers, cols: kernel.cols)
        defer { withExtendedLifetime(scratches) {} }
        try validate(kernel: kernel, workers: workers, scratches: scratches)
        parallelFor(workers: workers) { w in
            let s = scratches[w]
            for r in partition(kernel.rows, workers: workers, worker: w) {
                _ = kernel.score(row: r, count: kernel.cols, into: out + r * kernel.cols, scratch: s.convert.base)
            }
        }
    }

    /// Throws the first non-finite value's error, if any.
    static func validate(kernel: ScoreKernel, workers: Int, scratches: [RowScratch]) throws(PruneKitError) {
        defer { withExtendedLifetime(scratches) {} }
        var bad = FirstBadRow(workers: workers)
        bad.rows.withUnsafeMutableBufferPointer { badRows in
            parallelFor(workers: workers) { w in
                let s = scratches[w]
                for r in partition(kernel.rows, workers: workers, worker: w) {
                    let worst = kernel.score(row: r, count: kernel.cols, into: s.scores, scratch: s.convert.base)
                    if worst >= nonFiniteWord { badRows[w] = r; break }
                }
            }
        }
        if let row = bad.first {
            throw kernel.nonFiniteError(row: row, scratch: scratches[0].convert.base, scores: scratches[0].scores)
        }
    }

    /// The mask of one matrix for a per-row or N:M selection (layer and global scopes go
    /// through `StreamSelector`).
    static func rowMask(kernel: ScoreKernel, selection: Selection, threads: Int, into mask: UnsafeMutablePointer<UInt8>) throws(PruneKitError) {
        let rows = kernel.rows, cols = kernel.cols
        let workers = resolveThreads(threads, work: rows)
        let scratches = try makeScratches(workers: workers, cols: cols)
        defer { withExtendedLifetime(scratches) {} }

        switch selection {
        case .nm(let n, let m):
            try validate(kernel: kernel, workers: workers, scratches: scratches)
            let packed = try ScratchBuffer<UInt64>(count: workers * m)
            defer { withExtendedLifetime(packed) {} }
            parallelFor(workers: workers) { w in
                let s = scratches[w]
                for r in partition(rows, workers: workers, worker: w) {
                    if m == 4 {
                        _ = kernel.score(row: r, count: cols, into: s.scores, scratch: s.convert.base)
                        writeNM4Mask(scores: s.scores, cols: cols, prune: m - n, mask: mask + r * cols)
                        continue
                    }
                    s.keys(of: kernel, row: r)
                    writeNMMask(keys: s.keys, cols: cols, n: n, m: m, mask: mask + r * cols,
                                packed: packed.base + w * m)
                }
            }
        case .perRow(let sparsity):
            let k = prunedCount(groupSize: cols, sparsity: sparsity)
            if k == 0 || k == cols {
                try validate(kernel: kernel, workers: workers, scratches: scratches)
                (mask).initialize(repeating: k == 0 ? 1 : 0, count: rows * cols)
                return
            }
            // Phase 1: validate every row and find its threshold; nothing is written yet.
            let thresholds = try ScratchBuffer<UInt64>(count: rows)
            defer { withExtendedLifetime(thresholds) {} }
            var bad = FirstBadRow(workers: workers)
            bad.rows.withUnsafeMutableBufferPointer { badRows in
                parallelFor(workers: workers) { w in
                    let s = scratches[w]
                    for r in partition(rows, workers: workers, worker: w) {
                        let (worst, lowest, highest) = s.keys(of: kernel, row: r)
                        if worst >= nonFiniteWord { badRows[w] = r; break }
                        thresholds.base[r] = RowSelector.threshold(
                            keys: s.keys, n: cols, k: k, lowest: lowest, highest: highest,
                            candidates: s.candidates.base, bins: s.bins.base)
                    }
                }
            }
            if let row = bad.first {
                throw kernel.nonFiniteError(row: row, scratch: scratches[0].convert.base, scores: scratches[0].scores)
            }
            // Phase 2: write.
            parallelFor(workers: workers) { w in
                let s = scratches[w]
                for r in partition(rows, workers: workers, worker: w) {
                    _ = kernel.score(row: r, count: cols, into: s.scores, scratch: s.convert.base)
                    RowSelector.writeMask(scores: s.scores, n: cols, threshold: thresholds.base[r], mask: mask + r * cols)
                }
            }
        case .perLayer, .global:
            throw PruneKitError(.internal, "rowMask called with a layer-wide selection")
        }
    }
}
