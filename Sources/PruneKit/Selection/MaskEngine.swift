import CPruneKitShims

/// Per-worker scratch for scoring and selecting rows of up to `cols` entries.
final class RowScratch {
    private let scoreBuffer: ScratchBuffer<Float>
    private let keyBuffer: ScratchBuffer<UInt32>
    let convert: ScratchBuffer<Float>
    let candidates: ScratchBuffer<UInt64>
    let bins: ScratchBuffer<UInt32>
    /// One row's mask bytes before they are packed into bits.
    let rowMask: ScratchBuffer<UInt8>
    var scores: UnsafeMutablePointer<Float> { scoreBuffer.base }
    var keys: UnsafeMutablePointer<UInt32> { keyBuffer.base }

    init(cols: Int) throws(PruneKitError) {
        scoreBuffer = try ScratchBuffer(count: cols)
        convert = try ScratchBuffer(count: 2 * cols)
        keyBuffer = try ScratchBuffer(count: cols)
        candidates = try ScratchBuffer(count: cols)
        bins = try ScratchBuffer(count: 2 * RowSelector.binCount)
        rowMask = try ScratchBuffer(count: cols)
    }

    /// Scores and keys of a row; returns the kernel's finiteness word and the key range.
    @inline(__always)
    @discardableResult
    func keys(of kernel: ScoreKernel, row: Int) -> (worst: UInt32, lowest: UInt32, highest: UInt32) {
        kernel.scoresAndKeys(row: row, count: kernel.cols, scores: scores, keys: keys, scratch: convert.base)
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
        defer { keepAlive(scratches) }
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
        defer { keepAlive(scratches) }
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
        guard cols <= Int(Int32.max) else {
            throw .invalidShape("\(kernel.label)rows of \(cols) columns are longer than per-row and N:M selection take (2^31 - 1)")
        }
        let workers = resolveThreads(threads, work: rows)
        let scratches = try makeScratches(workers: workers, cols: cols)
        defer { keepAlive(scratches) }

        let k: Int
        switch selection {
        case .perRow(let sparsity):
            k = prunedCount(groupSize: cols, sparsity: sparsity)
            if k == 0 || k == cols {
                try validate(kernel: kernel, workers: workers, scratches: scratches)
                mask.initialize(repeating: k == 0 ? 1 : 0, count: rows * cols)
                return
            }
        case .nm: k = 0
        case .perLayer, .global:
            throw PruneKitError(.internal, "rowMask called with a layer-wide selection")
        }
        // Phase 1: score, validate and select each row while it is in cache, keeping its mask
        // as bits; nothing reaches `mask` until every row is known to be valid.
        let bytesPerRow = (cols + 7) / 8
        let bits = try ScratchBuffer<UInt8>(count: rows * bytesPerRow)
        defer { keepAlive(bits) }
        var bad = FirstBadRow(workers: workers)
        bad.rows.withUnsafeMutableBufferPointer { badRows in
            parallelFor(workers: workers) { w in
                let s = scratches[w]
                for r in partition(rows, workers: workers, worker: w) {
                    switch selection {
                    case .nm(let n, let m) where m == 4:
                        let worst = kernel.score(row: r, count: cols, into: s.scores, scratch: s.convert.base)
                        if worst >= nonFiniteWord { badRows[w] = r; return }
                        writeNM4Mask(scores: s.scores, cols: cols, prune: m - n, mask: s.rowMask.base)
                    case .nm(let n, let m):
                        if s.keys(of: kernel, row: r).worst >= nonFiniteWord { badRows[w] = r; return }
                        writeNMMask(keys: s.keys, cols: cols, n: n, m: m, mask: s.rowMask.base, packed: s.candidates.base)
                    default:
                        // Nonnegative scores serve as their own keys (their bit patterns);
                        // the threshold is turned back into an order key (sign bit set).
                        let nonnegative = kernel.scoresAreNonnegative
                        let (worst, lowest, highest) = nonnegative
                            ? kernel.nonnegativeScores(row: r, count: cols, into: s.scores, scratch: s.convert.base)
                            : s.keys(of: kernel, row: r)
                        if worst >= nonFiniteWord { badRows[w] = r; return }
                        // The next row's weights arrive while this row is selected.
                        if r + 1 < rows {
                            prunekit_prefetch(kernel.weights.rowAddress(r + 1), cols * kernel.weights.dtype.size)
                        }
                        let cut = KthSelection.select(
                            keys: nonnegative ? UnsafeRawPointer(s.scores) : UnsafeRawPointer(s.keys), n: cols, k: k,
                            lowest: lowest, highest: highest, binBits: RowSelector.binBits,
                            candidates: s.candidates.base, bins: s.bins.base)
                        RowSelector.writeMask(scores: s.scores, n: cols, key: nonnegative ? cut.key | 0x8000_0000 : cut.key,
                                              position: cut.position, mask: s.rowMask.base)
                    }
                    packBits(s.rowMask.base, count: cols, into: bits.base + r * bytesPerRow)
                }
            }
        }
        if let row = bad.first {
            throw kernel.nonFiniteError(row: row, scratch: scratches[0].convert.base, scores: scratches[0].scores)
        }
        // Phase 2: write.
        parallelFor(workers: workers) { w in
            for r in partition(rows, workers: workers, worker: w) {
                unpackBits(bits.base + r * bytesPerRow, count: cols, into: mask + r * cols)
            }
        }
    }
}

/// Packs 0/1 bytes into bits (bit i of byte b = entry 8b + i): a multiply gathers the low bit
/// of each of 8 bytes into the top byte.
@inline(__always)
func packBits(_ bytes: UnsafePointer<UInt8>, count: Int, into bits: UnsafeMutablePointer<UInt8>) {
    let raw = UnsafeRawPointer(bytes)
    var i = 0
    while i + 8 <= count {
        let v = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        bits[i / 8] = UInt8(truncatingIfNeeded: (v &* 0x0102_0408_1020_4080) >> 56)
        i += 8
    }
    if i < count {
        var last: UInt8 = 0
        for j in i..<count { last |= bytes[j] << UInt8(j - i) }
        bits[i / 8] = last
    }
}

/// 0/1 bytes of every byte value: entry x holds byte i = bit i of x.
let bitExpansion: [UInt64] = (0..<256).map { x in
    (0..<8).reduce(UInt64(0)) { $0 | (UInt64((x >> $1) & 1) << (8 * UInt64($1))) }
}

/// The inverse of `packBits`.
@inline(__always)
func unpackBits(_ bits: UnsafePointer<UInt8>, count: Int, into bytes: UnsafeMutablePointer<UInt8>) {
    bitExpansion.withUnsafeBufferPointer { table in
        let raw = UnsafeMutableRawPointer(bytes)
        var i = 0
        while i + 8 <= count {
            raw.storeBytes(of: table[Int(bits[i / 8])], toByteOffset: i, as: UInt64.self)
            i += 8
        }
        for j in i..<count { bytes[j] = (bits[i / 8] >> UInt8(j - i)) & 1 }
    }
}
