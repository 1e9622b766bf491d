/// The safe Swift API of a `Pruner`, over owned matrices: the weights are given to every step
/// (and written by it); the pruner keeps no pointer between calls.
extension Pruner {
    /// A pruner for layers of the shapes of `weights` (the values are not read here).
    /// - Parameters:
    ///   - criteria: One per layer; nil: magnitude for every layer.
    ///   - selection: `.perRow`, `.perLayer`, `.global` (the sparsity is the schedule's), or `.nm`
    ///     with a one-shot schedule.
    ///   - targets: Per-layer final sparsities (nil: the schedule's); not with `.global`.
    /// - Throws: `.invalidShape`, `.invalidArgument` for inconsistent arguments.
    /// The C function is `pk_pruner_create`.
    public init<S>(weights: [Matrix<S>], criteria: [PrunerCriterion]? = nil, selection: Selection, schedule: Schedule,
                   targets: [Double]? = nil, options: PrunerOptions = .init()) throws(PruneKitError) {
        try self.init(layers: weights.map { PrunedLayer(rows: $0.rows, cols: $0.cols, dtype: S.dtype) },
                      criteria: criteria ?? Array(repeating: .magnitude, count: weights.count), selection: selection,
                      schedule: schedule, targets: targets, options: options)
    }

    /// Applies training step `t` to `weights` (the shapes and dtype the pruner was made for); see
    /// `step(_:weights:gradients:)` over views for what a step does. Everything is checked
    /// before any weight is written.
    /// - Parameter gradients: One per layer, the layers' shapes (needed by `.gradientFlow`).
    /// - Throws: `.invalidArgument` for a step before the last one or missing gradients,
    ///   `.invalidShape` for other shapes, the errors of `pruningMasks` for the weights.
    /// The C function is `pk_pruner_step`.
    public mutating func step<S>(_ t: Int64, weights: inout [Matrix<S>],
                                 gradients: [any MatrixRepresentable]? = nil) throws(PruneKitError) {
        try withMutableMatrixViews(&weights) { views throws(PruneKitError) in
            guard let gradients else { return try step(t, weights: views) }
            try withMatrixViews(gradients) { g throws(PruneKitError) in try step(t, weights: views, gradients: g) }
        }
    }

    /// The current mask of `layer` (kept = 1; decaying and pruned weights are 0).
    /// The C function is `pk_pruner_mask`.
    public func mask(layer: Int) throws(PruneKitError) -> Mask {
        let shape = try checkedLayer(layer)
        return try Mask(rows: shape.rows, cols: shape.cols, values: maskBytes(layer: layer))
    }

    /// The factor each weight of `layer` is at: 1 kept, the decay factor of the last step for
    /// decaying weights, 0 pruned; in soft mode the soft mask.
    /// The C function is `pk_pruner_factors`.
    public func factors(layer: Int) throws(PruneKitError) -> Matrix<Float> {
        let shape = try checkedLayer(layer)
        return try Matrix(rows: shape.rows, cols: shape.cols, values: factorValues(layer: layer))
    }

    /// Soft mode: the soft mask m and dm/dw of `layer` at the last step (see
    /// `PrunerOptions.softTemperature`); not soft: the factors and 0.
    /// The C function is `pk_pruner_soft_mask`.
    public func softMask(layer: Int) throws(PruneKitError) -> (mask: Matrix<Float>, derivative: Matrix<Float>) {
        let shape = try checkedLayer(layer)
        let (m, d) = softMaskValues(layer: layer)
        return (try Matrix(rows: shape.rows, cols: shape.cols, values: m), try Matrix(rows: shape.rows, cols: shape.cols, values: d))
    }

    /// Replaces the state with one `serialized()` wrote for a pruner of the same configuration
    /// (the weights are the host's to restore). On error nothing changes.
    /// - Throws: `.corruptData` saying what is wrong.
    /// The C function is `pk_pruner_restore`.
    public mutating func restore(from bytes: [UInt8]) throws(PruneKitError) {
        let result: Result<Void, PruneKitError> = bytes.withUnsafeBytes { b in Result { () throws(PruneKitError) in try restore(from: b) } }
        try result.get()
    }

    private func checkedLayer(_ layer: Int) throws(PruneKitError) -> PrunedLayer {
        guard layers.indices.contains(layer) else {
            throw .invalidArgument("layer \(layer) is out of range (the pruner has \(layers.count) layers)")
        }
        return layers[layer]
    }
}
