/// Applying a structure selection: compact every member of a group into physically smaller
/// dense tensors, zero the pruned structures in place, or expand the selection into an entry
/// mask. Selections come from `structureSelection` (or the caller): one byte per structure,
/// 1 = keep.

/// Closed-form compensation of one column member while compacting (`pruneColumns` on it).
package struct StructureCompensation: @unchecked Sendable {
    /// The index of a `.cols` member of the group (the next layer, whose inputs are removed).
    package var member: Int
    /// That member's cols x cols Hessian (X^T X of its inputs), row-major.
    package var hessian: UnsafePointer<Double>
    package var hessianSize: Int
    package var options: ReconstructionOptions

    package init(member: Int, hessian: UnsafePointer<Double>, hessianSize: Int, options: ReconstructionOptions = .init()) {
        self.member = member
        self.hessian = hessian
        self.hessianSize = hessianSize
        self.options = options
    }
}

/// The byte range a view spans.
func byteRange(_ m: MatrixView) -> Range<UInt> {
    let start = UInt(bitPattern: m.base)
    return start..<(start + UInt(((m.rows - 1) * m.rowStride + m.cols) * m.dtype.size))
}

/// Writes the compacted form of every member of `group` into `outputs` (one per member, same
/// dtype, the member's shape minus the pruned rows or columns), and the kept structure indices
/// in increasing order into `keptIndices` (if given). With `compensation`, that column member's
/// kept columns are first updated in closed form for the removed ones. Everything is checked
/// before anything is written; outputs must not overlap the members or each other.
/// The C function is `pk_compact_group`.
package func compactGroup(_ group: StructureGroupView, keep: UnsafePointer<UInt8>, outputs: [MatrixView],
                         keptIndices: UnsafeMutablePointer<Int64>? = nil, compensation: StructureCompensation? = nil,
                         threads: Int = 0) throws(PruneKitError) {
    let kept = try checkCompaction(group, keep: keep, outputs: outputs, threads: threads)

    // Compensation goes into a scratch copy of the member, which is then compacted.
    var sources = group.members.map(\.tensor)
    var compensated: ScratchBuffer<UInt8>?
    defer { keepAlive(compensated) }
    if let c = compensation {
        guard c.member >= 0, c.member < group.members.count else {
            throw .invalidArgument("compensation member \(c.member) is not a member of the group")
        }
        let member = group.members[c.member]
        guard case .cols = member.axis else {
            throw .invalidArgument("compensation member \(c.member) is not split along its columns")
        }
        let t = member.tensor
        var keepColumns = [UInt8](repeating: 0, count: t.cols)
        for e in try StructureLayout(axis: member.axis, rows: t.rows, cols: t.cols).keptElements(kept) { keepColumns[e] = 1 }
        let buffer = try ScratchBuffer<UInt8>(count: try checkedProduct(t.rows * t.cols, t.dtype.size, "compensated member"))
        compensated = buffer
        let view = try MatrixView(base: buffer.base, dtype: t.dtype, rows: t.rows, cols: t.cols, rowStride: t.cols,
                                  name: "compensated member")
        try keepColumns.withUnsafeBufferPointer { k throws(PruneKitError) in
            try pruneColumns(weights: t, hessian: c.hessian, hessianSize: c.hessianSize, keepColumns: k.baseAddress!,
                             options: c.options, output: view)
        }
        sources[c.member] = view
    }
    writeCompaction(group, sources: sources, kept: kept, outputs: outputs, keptIndices: keptIndices, threads: threads)
}

/// Compacts a group (as `compactGroup`) after compensating its next-layer member for the pruned
/// channels in closed form from the weights and batch-norm statistics (UDFC). `biasShift` (if not
/// nil) receives the next layer's rows values to add to its bias (or to subtract from its own
/// batch norm's running mean when it has no bias). Everything is checked before anything is
/// written; outputs must not overlap the members or each other.
/// The C function is `pk_compact_group_data_free`.
/// - Throws: the errors of `compactGroup` and `dataFreeCoefficients`; `.numeric` when the
///   compensated weight overflows its dtype.
package func compactGroupDataFree(_ group: StructureGroupView, keep: UnsafePointer<UInt8>, outputs: [MatrixView],
                                 options: DataFreeCompensation, keptIndices: UnsafeMutablePointer<Int64>? = nil,
                                 biasShift: UnsafeMutablePointer<Double>? = nil, threads: Int = 0) throws(PruneKitError) {
    let kept = try checkCompaction(group, keep: keep, outputs: outputs, threads: threads)
    let n = try group.structureCount(label: "group: ")
    let (w, shift) = try dataFreeCompensatedNext(group, n: n, kept: kept, pruned: (0..<n).filter { keep[$0] == 0 },
                                                 options: options)
    let next = group.members[options.next].tensor
    let buffer = try ScratchBuffer<UInt8>(count: try checkedProduct(next.rows * next.cols, next.dtype.size, "compensated member"))
    defer { keepAlive(w, shift, buffer) }
    let view = try MatrixView(base: buffer.base, dtype: next.dtype, rows: next.rows, cols: next.cols, rowStride: next.cols,
                              name: "compensated member")
    try OBS<Double>.storeRows(w.base, rows: next.rows, cols: next.cols, into: view, threads: threads)
    var sources = group.members.map(\.tensor)
    sources[options.next] = view
    writeCompaction(group, sources: sources, kept: kept, outputs: outputs, keptIndices: keptIndices, threads: threads)
    biasShift?.update(from: shift.base, count: next.rows)
}

/// Checks a compaction (selection, thread count, outputs' shapes, dtypes and overlaps) before
/// anything is computed or written; returns the kept structure indices.
func checkCompaction(_ group: StructureGroupView, keep: UnsafePointer<UInt8>, outputs: [MatrixView],
                     threads: Int) throws(PruneKitError) -> [Int] {
    let (n, kept) = try checkSelection(group, keep: keep)
    guard threads >= 0 else { throw .invalidArgument("num_threads must be >= 0, got \(threads)") }
    guard !kept.isEmpty else { throw .invalidArgument("the selection keeps no structure of \(n); a compacted tensor cannot be empty") }
    guard outputs.count == group.members.count else {
        throw .invalidShape("\(outputs.count) outputs for \(group.members.count) members")
    }
    let layouts = try group.layouts(label: "group: ")
    for (m, member) in group.members.enumerated() {
        let t = member.tensor, out = outputs[m]
        let label = "outputs[\(m)]"
        let (rows, cols) = try layouts[m].compactedShape(kept: kept.count, label: "member \(m): ")
        guard out.dtype == t.dtype else {
            throw PruneKitError(.unsupportedDType, "\(label) is \(out.dtype.name), member \(m) is \(t.dtype.name); compaction keeps the dtype")
        }
        if out.rows < rows || out.cols < cols {
            throw PruneKitError(.bufferTooSmall, "\(label) is \(out.rows) x \(out.cols), the compacted member \(m) is \(rows) x \(cols)")
        }
        guard out.rows == rows, out.cols == cols else {
            throw .invalidShape("\(label) is \(out.rows) x \(out.cols), the compacted member \(m) is \(rows) x \(cols)")
        }
        let range = byteRange(out)
        for (k, other) in group.members.enumerated() where byteRange(other.tensor).overlaps(range) {
            throw .invalidArgument("\(label) overlaps member \(k)'s memory; compact into separate buffers")
        }
        for k in 0..<m where byteRange(outputs[k]).overlaps(range) {
            throw .invalidArgument("\(label) overlaps outputs[\(k)]")
        }
    }
    return kept
}

/// Copies the kept rows or columns of `sources` (the members, one possibly replaced by a
/// compensated copy) into the outputs, which `checkCompaction` accepted.
func writeCompaction(_ group: StructureGroupView, sources: [MatrixView], kept: [Int], outputs: [MatrixView],
                     keptIndices: UnsafeMutablePointer<Int64>?, threads: Int) {
    for (m, member) in group.members.enumerated() {
        // Every layout was checked by `checkCompaction`.
        guard let layout = try? StructureLayout(axis: member.axis, rows: member.tensor.rows, cols: member.tensor.cols) else { continue }
        switch member.axis {
        case .rows: copyRows(from: sources[m], rows: layout.keptElements(kept), into: outputs[m], threads: threads)
        case .cols: gatherColumns(from: sources[m], cols: layout.keptElements(kept), into: outputs[m], threads: threads)
        case .blocks: break
        }
    }
    if let keptIndices { for (k, i) in kept.enumerated() { keptIndices[k] = Int64(i) } }
}

private func copyRows(from source: MatrixView, rows: [Int], into out: MatrixView, threads: Int) {
    let bytes = source.cols * source.dtype.size
    let workers = resolveThreads(threads, work: rows.count / 64 + 1)
    parallelFor(workers: workers) { worker in
        for k in partition(rows.count, workers: workers, worker: worker) {
            out.rowAddress(k).copyMemory(from: source.rowAddress(rows[k]), byteCount: bytes)
        }
    }
}

private func gatherColumns(from source: MatrixView, cols: [Int], into out: MatrixView, threads: Int) {
    let workers = resolveThreads(threads, work: source.rows / 64 + 1)
    cols.withUnsafeBufferPointer { index in
        parallelFor(workers: workers) { worker in
            for r in partition(source.rows, workers: workers, worker: worker) {
                let from = source.rowAddress(r), to = out.rowAddress(r)
                switch source.dtype.size {
                case 4: gather(UInt32.self, from, to, index)
                case 8: gather(UInt64.self, from, to, index)
                default: gather(UInt16.self, from, to, index)
                }
            }
        }
    }
}

@inline(__always)
private func gather<T>(_: T.Type, _ from: UnsafeMutableRawPointer, _ to: UnsafeMutableRawPointer, _ index: UnsafeBufferPointer<Int>) {
    let s = from.assumingMemoryBound(to: T.self), d = to.assumingMemoryBound(to: T.self)
    for k in 0..<index.count { d[k] = s[index[k]] }
}

/// Sets the pruned structures (keep byte 0) of every member to +0.0 (all-zero bits in every
/// dtype), in place.
/// The C function is `pk_apply_structures`.
package func applyStructures(_ group: StructureGroupView, keep: UnsafePointer<UInt8>) throws(PruneKitError) {
    let (n, _) = try checkSelection(group, keep: keep)
    let layouts = try group.layouts(label: "group: ")
    for (member, layout) in zip(group.members, layouts) {
        let t = member.tensor, size = t.dtype.size
        func zero(row r: Int, from col: Int, count: Int) {
            (t.rowAddress(r) + col * size).initializeMemory(as: UInt8.self, repeating: 0, count: count * size)
        }
        switch member.axis {
        case .rows(let span):
            for r in 0..<t.rows where keep[r / span] == 0 { zero(row: r, from: 0, count: t.cols) }
        case .cols(let span):
            let gone = (0..<n).filter { keep[$0] == 0 }
            for r in 0..<t.rows { for i in gone { zero(row: r, from: i * span, count: span) } }
        case .blocks(let br, let bc):
            let perRow = layout.blocksPerRow
            for r in 0..<t.rows {
                for b in 0..<perRow where keep[(r / br) * perRow + b] == 0 {
                    zero(row: r, from: b * bc, count: min(bc, t.cols - b * bc))
                }
            }
        }
    }
}

/// Expands a selection into the entry mask of one member (rows * cols bytes, 1 = keep).
/// The C function is `pk_structure_mask`.
package func structureMask(_ group: StructureGroupView, member: Int, keep: UnsafePointer<UInt8>,
                          into mask: UnsafeMutablePointer<UInt8>) throws(PruneKitError) {
    _ = try checkSelection(group, keep: keep)
    guard member >= 0, member < group.members.count else {
        throw .invalidArgument("member \(member) is outside the group's \(group.members.count) members")
    }
    try group.layouts(label: "group: ")[member].expandMask(keep: keep, into: mask)
}
