/// Layer-wide and global selection: one comparison group spanning whole matrices (one or many
/// layers) that is never materialised. Scores are recomputed in each pass instead of stored:
///  1. validate and histogram the upper 16 bits of every key;
///  2. histogram the lower 16 bits of the keys in the bucket holding rank k: the exact key T
///     of the k-th entry and how many entries tie with it are now known;
///  3. write key > T as kept, key < T as pruned, ties as kept, counting ties per chunk;
///  4. in index order, prune the first (k - #below T) ties.
/// Chunks are fixed row ranges in index order, so nothing depends on the thread count.
enum StreamSelector {
    struct Chunk {
        let layer: Int
        let rows: Range<Int>
    }

    static func masks(kernels: [ScoreKernel], sparsity: Double, threads: Int,
                      into masks: [UnsafeMutablePointer<UInt8>]) throws(PruneKitError) {
        var total = 0
        var chunks: [Chunk] = []
        var maxCols = 0
        for (layer, kernel) in kernels.enumerated() {
            let (sum, overflow) = total.addingReportingOverflow(kernel.rows * kernel.cols)
            guard !overflow else { throw .invalidShape("the layers together have too many entries") }
            total = sum
            maxCols = max(maxCols, kernel.cols)
            let rowsPerChunk = max(1, 32768 / kernel.cols)
            var r = 0
            while r < kernel.rows {
                chunks.append(Chunk(layer: layer, rows: r..<min(kernel.rows, r + rowsPerChunk)))
                r += rowsPerChunk
            }
        }
        let k = prunedCount(groupSize: total, sparsity: sparsity)
        let workers = resolveThreads(threads, work: chunks.count)
        let scratches = try makeScratches(workers: workers, cols: maxCols)
        let histograms = try ScratchBuffer<Int>(repeating: 0, count: workers * 65536)
        defer { keepAlive(scratches, histograms) }

        // Runs body(worker, chunkIndex, kernel, row, keys) over every row, each worker taking a
        // contiguous run of chunks in order.
        func forEachRow(_ body: (Int, Int, ScoreKernel, Int, RowScratch) -> Bool) {
            parallelFor(workers: workers) { w in
                for c in partition(chunks.count, workers: workers, worker: w) {
                    let chunk = chunks[c]
                    for r in chunk.rows where !body(w, c, kernels[chunk.layer], r, scratches[w]) { return }
                }
            }
        }

        // Pass 1: validate, histogram of the upper halves.
        var bad = Array(repeating: (chunk: Int.max, row: 0), count: workers)
        bad.withUnsafeMutableBufferPointer { badSlots in
            forEachRow { w, c, kernel, r, s in
                if s.keys(of: kernel, row: r).worst >= nonFiniteWord {
                    badSlots[w] = (c, r)
                    return false
                }
                let histogram = histograms.base + w * 65536
                let keys = s.keys
                for j in 0..<kernel.cols { histogram[Int(keys[j] >> 16)] &+= 1 }
                return true
            }
        }
        if let first = bad.min(by: { $0.chunk < $1.chunk }), first.chunk != Int.max {
            let s = scratches[0]
            throw kernels[chunks[first.chunk].layer].nonFiniteError(row: first.row, scratch: s.convert.base, scores: s.scores)
        }
        if k == 0 || k == total {
            for (layer, kernel) in kernels.enumerated() {
                masks[layer].initialize(repeating: k == 0 ? 1 : 0, count: kernel.rows * kernel.cols)
            }
            return
        }
        let (upperDigit, belowUpper) = RadixSelection.bucket(histograms.base, digits: 65536, copies: workers, rank: k)
        let upper = UInt32(upperDigit)

        // Pass 2: histogram of the lower halves inside the bucket.
        histograms.base.update(repeating: 0, count: workers * 65536)
        forEachRow { w, _, kernel, r, s in
            s.keys(of: kernel, row: r)
            let histogram = histograms.base + w * 65536
            let keys = s.keys
            for j in 0..<kernel.cols where keys[j] >> 16 == upper { histogram[Int(keys[j] & 0xFFFF)] &+= 1 }
            return true
        }
        let (lower, belowLower) = RadixSelection.bucket(histograms.base, digits: 65536, copies: workers, rank: k - belowUpper)
        let threshold = upper << 16 | UInt32(lower)
        let tiesToPrune = k - belowUpper - belowLower

        // Pass 3: write, ties kept for now, counted per chunk.
        let ties = try ScratchBuffer<Int>(repeating: 0, count: chunks.count)
        defer { keepAlive(ties) }
        forEachRow { _, c, kernel, r, s in
            s.keys(of: kernel, row: r)
            let keys = s.keys
            let mask = masks[chunks[c].layer] + r * kernel.cols
            var tied = 0
            for j in 0..<kernel.cols {
                mask[j] = keys[j] >= threshold ? 1 : 0
                tied &+= keys[j] == threshold ? 1 : 0
            }
            ties.base[c] &+= tied
            return true
        }

        // Pass 4: prune the first ties in index order.
        var fixes: [(chunk: Int, count: Int)] = []
        var before = 0
        for c in 0..<chunks.count where before < tiesToPrune {
            if ties.base[c] > 0 { fixes.append((c, min(ties.base[c], tiesToPrune - before))) }
            before += ties.base[c]
        }
        let fixWorkers = resolveThreads(threads, work: fixes.count)
        parallelFor(workers: min(fixWorkers, workers)) { w in
            let s = scratches[w]
            for f in partition(fixes.count, workers: min(fixWorkers, workers), worker: w) {
                let chunk = chunks[fixes[f].chunk]
                let kernel = kernels[chunk.layer]
                var remaining = fixes[f].count
                for r in chunk.rows where remaining > 0 {
                    s.keys(of: kernel, row: r)
                    let keys = s.keys
                    let mask = masks[chunk.layer] + r * kernel.cols
                    for j in 0..<kernel.cols where remaining > 0 && keys[j] == threshold {
                        mask[j] = 0
                        remaining -= 1
                    }
                }
            }
        }
    }
}
