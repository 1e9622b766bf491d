import CPruneKitShims

/// Structure scores: each structure's score from its members' entry scores (the criterion's,
/// summed by `memberStructureSums`) or from the group's activation statistics, then normalised.

/// Rows handled per task when column sums are split across threads: fixed, so that the order of
/// additions (and so the result) does not depend on the thread count.
let structureRowChunk = 64

/// Sum of `x[j]` (power 1: |x[j]|; power 2: x[j]^2) in float64 with eight fixed accumulators.
@inline(__always)
func segmentSum(_ x: UnsafePointer<Float>, count: Int, squared: Bool) -> Double {
    var a = SIMD8<Double>()
    var j = 0
    if squared {
        while j + 8 <= count {
            let v = SIMD8<Double>(SIMD8<Float>(UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<Float>.self)))
            a += v * v
            j += 8
        }
    } else {
        while j + 8 <= count {
            let bits = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD8<UInt32>.self) & 0x7FFF_FFFF
            a += SIMD8<Double>(unsafeBitCast(bits, to: SIMD8<Float>.self))
            j += 8
        }
    }
    var tail = 0.0
    while j < count {
        let v = Double(x[j])
        tail += squared ? v * v : Swift.abs(v)
        j += 1
    }
    let half = a.lowHalf + a.highHalf
    let quarter = half.lowHalf + half.highHalf
    return (quarter[0] + quarter[1]) + tail
}

/// One member's sums over each structure (of |s| or s^2 for entry scores s), into `sums`
/// (structure count doubles, overwritten). Rows are taken in fixed chunks (64 rows, or one block
/// row) whose partial sums combine in chunk order, so the result does not depend on threads.
///
/// `wide`: use the AVX2 kernels where the CPU has them (the results are the same bit for bit;
/// tests compare both paths).
func memberStructureSums(_ member: StructureMemberView, structures n: Int, squared: Bool, threads: Int,
                         label: String, into sums: UnsafeMutablePointer<Double>,
                         wide: Bool = wideKernels) throws(PruneKitError) {
    let kernel = try ScoreKernel(weights: member.tensor, criterion: member.criterion, label: label)
    let rows = kernel.rows, cols = kernel.cols
    let chunkRows: Int, width: Int
    switch member.axis {
    case .rows: (chunkRows, width) = (structureRowChunk, 0)
    case .cols: (chunkRows, width) = (structureRowChunk, cols)
    case .blocks(let r, _): (chunkRows, width) = (r, try StructureLayout(axis: member.axis, rows: rows, cols: cols, label: label).blocksPerRow)
    }
    let chunks = (rows + chunkRows - 1) / chunkRows
    let workers = resolveThreads(threads, work: chunks)
    let partials = try ScratchBuffer<Double>(repeating: 0, count: chunks * width)
    let rowSums = try ScratchBuffer<Double>(repeating: 0, count: width == 0 ? rows : 0)
    let slots = if case .cols = member.axis { 4 } else { 1 }   // column sums take four rows at once
    let scratch = try ScratchBuffer<Float>(count: workers * slots * 3 * cols)
    let bad = try ScratchBuffer<Int>(repeating: Int.max, count: workers)
    defer { keepAlive(partials, rowSums, scratch, bad) }
    let axis = member.axis
    // Magnitude needs no score buffer: |w| and w^2 come straight from the (float32) row.
    let direct: Bool = if case .magnitude = kernel.kind { true } else { false }
    parallelFor(workers: workers) { worker in
        /// Row r's entry scores (in scratch slot 0...3), or nil (and the row recorded) when one
        /// is not finite.
        /// With `checked: false` (magnitude, wide kernels) the row is returned as it is: the wide
        /// kernel that sums it reports non-finite entries, and the caller records the row.
        func entries(_ r: Int, _ slot: Int = 0, checked: Bool = true) -> UnsafePointer<Float>? {
            let s = scratch.base + (worker * slots + slot) * 3 * cols
            let conv = s + 2 * cols
            if direct {
                let w = kernel.weights.floats(row: r, count: cols, scratch: s)
                if !checked { return w }
                var flags: UInt32 = 0
                for j in 0..<cols { flags |= nonFiniteFlag(w[j].bitPattern) }
                if flags & 0x8000_0000 == 0 { return w }
            } else if kernel.score(row: r, count: cols, into: conv, scratch: s) < 0x7F80_0000 {
                return UnsafePointer(conv)
            }
            bad.base[worker] = min(bad.base[worker], r)
            return nil
        }
        /// The first of rows r ..< r + count with a non-finite entry score, recorded (the wide
        /// kernels only say that one of them has one).
        func recordFirstBad(_ r: Int, _ count: Int) {
            for row in r..<(r + count) where entries(row) == nil { return }
        }
        for chunk in partition(chunks, workers: workers, worker: worker) {
            let acc = partials.base + chunk * width
            var r = chunk * chunkRows
            let end = min(rows, (chunk + 1) * chunkRows)
            if case .cols = axis {
                // Four rows at a time: acc[j] += (a^2 + b^2) + (c^2 + d^2), a fixed order.
                // The same sums by the AVX2 kernel; magnitude rows are checked as they are summed.
                while wide, r + 4 <= end {
                    defer { r += 4 }
                    guard let a = entries(r, checked: !direct), let b = entries(r + 1, 1, checked: !direct),
                          let c = entries(r + 2, 2, checked: !direct), let d = entries(r + 3, 3, checked: !direct) else { continue }
                    let flags = prunekit_wide_column_sums4(a, b, c, d, acc, cols, squared ? 1 : 0)
                    if direct, flags & 0x8000_0000 != 0 { recordFirstBad(r, 4) }
                }
                while r + 4 <= end {
                    guard let a = entries(r), let b = entries(r + 1, 1), let c = entries(r + 2, 2), let d = entries(r + 3, 3) else {
                        r += 4
                        continue
                    }
                    if squared {
                        for j in 0..<cols {
                            let (x, y, z, w) = (Double(a[j]), Double(b[j]), Double(c[j]), Double(d[j]))
                            acc[j] += (x * x + y * y) + (z * z + w * w)
                        }
                    } else {
                        for j in 0..<cols {
                            acc[j] += (Double(Swift.abs(a[j])) + Double(Swift.abs(b[j]))) + (Double(Swift.abs(c[j])) + Double(Swift.abs(d[j])))
                        }
                    }
                    r += 4
                }
            }
            if wide, case .rows = axis {
                while r < end {
                    defer { r += 1 }
                    guard let x = entries(r, checked: !direct) else { continue }
                    var flags: UInt32 = 0
                    rowSums.base[r] = prunekit_wide_sum(x, cols, squared ? 1 : 0, &flags)
                    if direct, flags & 0x8000_0000 != 0 { recordFirstBad(r, 1) }
                }
            }
            while r < end {
                defer { r += 1 }
                guard let x = entries(r) else { continue }
                switch axis {
                case .rows:
                    rowSums.base[r] = segmentSum(x, count: cols, squared: squared)
                case .cols:
                    if squared {
                        for j in 0..<cols { let v = Double(x[j]); acc[j] += v * v }
                    } else {
                        for j in 0..<cols { acc[j] += Double(Swift.abs(x[j])) }
                    }
                case .blocks(_, let c):
                    var b = 0, j = 0
                    while j < cols {
                        let w = min(c, cols - j)
                        if wide {
                            var flags: UInt32 = 0   // already checked
                            acc[b] += prunekit_wide_sum(x + j, w, squared ? 1 : 0, &flags)
                        } else {
                            acc[b] += segmentSum(x + j, count: w, squared: squared)
                        }
                        j += w
                        b += 1
                    }
                }
            }
        }
    }
    let firstBad = (0..<workers).map { bad.base[$0] }.min()!
    if firstBad != Int.max {
        let s = try ScratchBuffer<Float>(count: 3 * cols)
        defer { keepAlive(s) }
        throw kernel.nonFiniteError(row: firstBad, scratch: s.base, scores: s.base + 2 * cols)
    }
    sums.initialize(repeating: 0, count: n)
    switch axis {
    case .rows(let span):
        for r in 0..<rows { sums[r / span] += rowSums.base[r] }
    case .cols(let span):
        for chunk in 1..<max(chunks, 1) {
            let p = partials.base + chunk * cols
            for j in 0..<cols { partials.base[j] += p[j] }
        }
        for j in 0..<cols { sums[j / span] += partials.base[j] }
    case .blocks:
        sums.update(from: partials.base, count: n)
    }
}

/// Scores of every group's structures after normalisation, concatenated in group order.
/// `counts` holds each group's structure count, checked (`StructurePlan`).
func computeStructureScores(groups: [StructureGroupView], counts: [Int],
                            options: StructureOptions) throws(PruneKitError) -> [Double] {
    var scores: [Double] = []
    scores.reserveCapacity(counts.reduce(0, +))
    for (g, group) in groups.enumerated() {
        let n = counts[g]
        var values = [Double](repeating: 0, count: n)
        switch options.criterion {
        case .l1, .l2:
            let squared = options.criterion == .l2
            let sums = try ScratchBuffer<Double>(count: n)
            defer { keepAlive(sums) }
            var scoredCount = 0
            for (m, member) in group.members.enumerated() where member.scored {
                try memberStructureSums(member, structures: n, squared: squared, threads: options.threads,
                                        label: "group \(g), member \(m): ", into: sums.base)
                for i in 0..<n {
                    let v = squared ? sums.base[i].squareRoot() : sums.base[i]
                    switch options.reduction {
                    case .sum, .mean: values[i] += v
                    case .max: values[i] = scoredCount == 0 ? v : Swift.max(values[i], v)
                    }
                }
                scoredCount += 1
            }
            if options.reduction == .mean { for i in 0..<n { values[i] /= Double(scoredCount) } }
        case .meanAbsActivation, .nonzeroFraction:
            let activity = group.activity!
            let k = activity.count / n
            for (j, a) in activity.enumerated() {
                guard a.isFinite, a >= 0 else { throw .nonFinite("group \(g): activation statistic \(j) is \(a)") }
                values[j / k] += a
            }
            for i in 0..<n { values[i] /= Double(k) }
        }
        for i in 0..<n where !values[i].isFinite {
            throw .nonFinite("group \(g): the score of structure \(i) overflows (\(values[i]))")
        }
        normalize(&values, options.normalization)
        scores += values
    }
    return scores
}

/// Scales one group's scores in place (a zero divisor leaves them unchanged).
func normalize(_ values: inout [Double], _ how: StructureNormalization) {
    let n = Double(values.count)
    let sum = values.reduce(0, +)
    switch how {
    case .none: return
    case .mean, .sum:
        let d = how == .mean ? sum / n : sum
        if d != 0 { for i in values.indices { values[i] /= d } }
    case .max:
        let d = values.max()!
        if d != 0 { for i in values.indices { values[i] /= d } }
    case .standard:
        let mean = sum / n
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n
        let sd = variance.squareRoot()
        for i in values.indices { values[i] = sd != 0 ? (values[i] - mean) / sd : 0 }
    }
}
