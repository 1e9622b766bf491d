/// A pruning mask: `rows * cols` bytes, row-major, 1 = keep, 0 = pruned (`w * mask`).
public struct Mask: Sendable, Equatable {
    public let rows: Int
    public let cols: Int
    public var values: [UInt8]

    public init(rows: Int, cols: Int, values: [UInt8]) throws(PruneKitError) {
        guard rows > 0, cols > 0, rows.multipliedReportingOverflow(by: cols) == (values.count, false) else {
            throw .invalidShape("\(values.count) mask bytes do not fill \(rows) x \(cols)")
        }
        self.rows = rows
        self.cols = cols
        self.values = values
    }

    /// Throws unless the mask is `rows` x `cols` (the shape of the weights it is for).
    func check(rows: Int, cols: Int) throws(PruneKitError) {
        guard self.rows == rows, self.cols == cols else {
            throw .invalidShape("mask is \(self.rows) x \(self.cols), weights are \(rows) x \(cols)")
        }
    }

    /// Whether the weight at (row, col) is kept.
    public subscript(row: Int, col: Int) -> Bool { values[row * cols + col] != 0 }

    /// The fraction of pruned entries.
    public var sparsity: Double { Double(values.count - values.reduce(0) { $0 + Int($1) }) / Double(values.count) }

    /// The fraction of pruned entries of each row.
    public var rowSparsities: [Double] {
        (0..<rows).map { r in
            Double(cols - values[(r * cols)..<((r + 1) * cols)].reduce(0) { $0 + Int($1) }) / Double(cols)
        }
    }
}

/// Throws unless every one of `count` mask bytes is 0 or 1 (names the first that is not).
func checkMaskBytes(_ mask: UnsafePointer<UInt8>, count: Int) throws(PruneKitError) {
    var worst: UInt8 = 0
    for i in 0..<count { worst = max(worst, mask[i]) }
    if worst > 1 {
        let i = (0..<count).first { mask[$0] > 1 }!
        throw .invalidArgument("mask byte at index \(i) is \(mask[i]); masks hold only 0 and 1")
    }
}

// MARK: - Over views (zero-copy; what the C functions call)

/// Scores of every weight by `criterion`, dense row-major into `scores` (rows * cols floats).
/// Nothing is written unless every score is finite.
///
/// - Throws: `PruneKitError`; see `pk_score` for the statuses.
/// The C function is `pk_score`.
package func importanceScores(weights: MatrixView, criterion: CriterionView, threads: Int = 0,
                             into scores: UnsafeMutablePointer<Float>) throws(PruneKitError) {
    try checkThreads(threads)
    let kernel = try ScoreKernel(weights: weights, criterion: criterion)
    try MaskEngine.scores(kernel: kernel, threads: threads, into: scores)
}

/// The pruning mask of one matrix, written to `mask` (rows * cols bytes) only on success.
///
/// - Parameters:
///   - threads: Worker threads, 0 = one per CPU. The result does not depend on it.
/// - Throws: `PruneKitError`; see `pk_mask` for the statuses.
/// The C function is `pk_mask`.
package func pruningMask(weights: MatrixView, criterion: CriterionView, selection: Selection, threads: Int = 0,
                        into mask: UnsafeMutablePointer<UInt8>) throws(PruneKitError) {
    try pruningMasks(layers: [(weights, criterion)], selection: selection, threads: threads, into: [mask])
}

/// Masks of several layers. `.global` ranks all layers' entries together (index: layer
/// position, then row * cols + col); other selections handle each layer on its own. Nothing is
/// written unless every layer is valid.
/// The C function is `pk_mask_layers`.
package func pruningMasks(layers: [(weights: MatrixView, criterion: CriterionView)], selection: Selection,
                         threads: Int = 0, into masks: [UnsafeMutablePointer<UInt8>]) throws(PruneKitError) {
    try checkThreads(threads)
    try selection.validate()
    guard !layers.isEmpty else { throw .invalidShape("no layers given") }
    guard masks.count == layers.count else {
        throw .invalidShape("\(layers.count) layers but \(masks.count) mask buffers")
    }
    let single = layers.count == 1
    var kernels: [ScoreKernel] = []
    for (i, layer) in layers.enumerated() {
        let label = single ? "" : "layer \(i): "
        try selection.validate(cols: layer.weights.cols, label: label)
        kernels.append(try ScoreKernel(weights: layer.weights, criterion: layer.criterion, label: label))
    }
    switch selection {
    case .global(let sparsity):
        try StreamSelector.masks(kernels: kernels, sparsity: sparsity, threads: threads, into: masks)
    case .perLayer(let sparsity):
        if !single { try validateAll(kernels, threads: threads) }
        for (i, kernel) in kernels.enumerated() {
            try StreamSelector.masks(kernels: [kernel], sparsity: sparsity, threads: threads, into: [masks[i]])
        }
    case .perRow, .nm:
        if !single { try validateAll(kernels, threads: threads) }
        for (i, kernel) in kernels.enumerated() {
            try MaskEngine.rowMask(kernel: kernel, selection: selection, threads: threads, into: masks[i])
        }
    }
}

private func validateAll(_ kernels: [ScoreKernel], threads: Int) throws(PruneKitError) {
    for kernel in kernels {
        let workers = resolveThreads(threads, work: kernel.rows)
        let scratches = try makeScratches(workers: workers, cols: kernel.cols)
        defer { keepAlive(scratches) }
        try MaskEngine.validate(kernel: kernel, workers: workers, scratches: scratches)
    }
}

func checkThreads(_ threads: Int) throws(PruneKitError) {
    guard threads >= 0 else { throw .invalidArgument("num_threads must be >= 0, got \(threads)") }
}

// MARK: - Over owned matrices

/// Scores of every weight by `criterion`.
/// - Throws: `PruneKitError` on bad shapes or non-finite values.
public func importanceScores(for weights: some MatrixRepresentable, criterion: Criterion, threads: Int = 0) throws(PruneKitError) -> Matrix<Float> {
    var failure: PruneKitError?
    let count = weights.rows * weights.cols
    let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
        do throws(PruneKitError) {
            try weights.withMatrixView { view throws(PruneKitError) in
                try criterion.withView { c throws(PruneKitError) in
                    try importanceScores(weights: view, criterion: c, threads: threads, into: buffer.baseAddress!)
                }
            }
            initialized = count
        } catch {
            failure = error
            initialized = 0
        }
    }
    if let failure { throw failure }
    return try Matrix(rows: weights.rows, cols: weights.cols, values: values)
}

/// The pruning mask of `weights` by `criterion` and `selection`.
///
///     let mask = try pruningMask(for: w, criterion: .wanda(featureNorms: norms), selection: .perRow(sparsity: 0.5))
///
/// - Throws: `PruneKitError` on bad shapes, bad parameters or non-finite values.
public func pruningMask(for weights: some MatrixRepresentable, criterion: Criterion, selection: Selection,
                        threads: Int = 0) throws(PruneKitError) -> Mask {
    try pruningMasks(for: [(weights, criterion)], selection: selection, threads: threads)[0]
}

/// Masks of several layers; `.global` ranks them together.
public func pruningMasks(for layers: [(weights: any MatrixRepresentable, criterion: Criterion)], selection: Selection,
                         threads: Int = 0) throws(PruneKitError) -> [Mask] {
    guard !layers.isEmpty else { throw .invalidShape("no layers given") }
    // Lend every layer's memory, then run once over all of them into buffers that own theirs
    // (an array's base address is only valid inside its withUnsafeMutableBufferPointer).
    var buffers: [ScratchBuffer<UInt8>] = []
    for layer in layers { buffers.append(try ScratchBuffer<UInt8>(repeating: 0, count: layer.weights.rows * layer.weights.cols)) }
    func lend(_ i: Int, _ views: [(weights: MatrixView, criterion: CriterionView)]) throws(PruneKitError) {
        if i == layers.count {
            try pruningMasks(layers: views, selection: selection, threads: threads, into: buffers.map(\.base))
            return
        }
        try layers[i].weights.withMatrixView { view throws(PruneKitError) in
            try layers[i].criterion.withView { c throws(PruneKitError) in
                try lend(i + 1, views + [(view, c)])
            }
        }
    }
    try lend(0, [])
    var masks: [Mask] = []
    for (i, layer) in layers.enumerated() {
        let values = [UInt8](UnsafeBufferPointer(start: buffers[i].base, count: buffers[i].count))
        masks.append(try Mask(rows: layer.weights.rows, cols: layer.weights.cols, values: values))
    }
    return masks
}
