/// What a progressive pruner ranks by. Raw kinds are the `pk_criterion_kind` values.
public enum PrunerCriterion: Sendable, Equatable {
    case magnitude
    case random(seed: UInt64)
    /// |w| * featureNorms[col] (Wanda); the norms are copied.
    case wanda(featureNorms: [Float])
    /// |w| * featureStd[col] (STADE).
    case stade(featureStd: [Float])
    /// Gradient flow: a moving average of |w * g| over the gradients the host passes with every
    /// step, e = momentum * e + (1 - momentum) * |w * g| in float32 (the C kind PK_CRITERION_TAYLOR).
    case gradientFlow

    var kind: Int32 {
        switch self {
        case .magnitude: 0
        case .random: 1
        case .wanda: 2
        case .stade: 3
        case .gradientFlow: 4
        }
    }
}

/// Options of a progressive pruner. The C struct is `pk_pruner_options`.
public struct PrunerOptions: Sendable, Equatable {
    /// Decaying masks (DPM): a weight chosen at step t0 is scaled by max(0, 1 - (t - t0 + 1) / D) at
    /// step t instead of being cut; D <= 1 cuts at once.
    public var decaySteps: Int64
    /// The moving-average factor of the gradient-flow scores, in [0, 1).
    public var gradientMomentum: Double
    /// Worker threads of the mask computations, 0 = one per CPU; results never depend on it.
    public var threads: Int

    public init(decaySteps: Int64 = 0, gradientMomentum: Double = 0.9, threads: Int = 0) {
        self.decaySteps = decaySteps
        self.gradientMomentum = gradientMomentum
        self.threads = threads
    }
}

/// Per-entry state of a progressive pruner.
enum EntryState: UInt8 {
    case kept = 0, decaying = 1, pruned = 2
}

/// A pruner that follows a sparsity schedule over training steps. It keeps the views of the
/// host's weights it was made with and writes them at every `step`: the memory must stay valid
/// (and at the same address) for the pruner's lifetime. Masks come from the library's own
/// criteria and selections (`pruningMasks`), so a mask at step t is the one-shot mask of the
/// weights at t's scheduled sparsity. Not thread-safe by itself (the C handle serializes calls).
/// The C handle is `pk_pruner`.
public struct Pruner: @unchecked Sendable {
    public let layers: [MatrixView]
    public let criteria: [PrunerCriterion]
    /// The selection; its sparsity is replaced by the schedule's at every update.
    public let selection: Selection
    public let schedule: Schedule
    /// The final sparsity of each layer.
    public let targets: [Double]
    public let options: PrunerOptions
    let features: [ScratchBuffer<Float>?]

    var states: [[UInt8]]
    var anchors: [[Double]]
    var since: [[Int64]]
    var flow: [[Float]]
    /// The last step applied (-1: none), and the update point of the current masks (-1: none).
    public internal(set) var lastStep: Int64 = -1
    public internal(set) var lastPoint: Int64 = -1

    var decays: Bool { options.decaySteps > 1 }
    var usesFlow: Bool { criteria.contains(.gradientFlow) }

    /// - Parameters:
    ///   - layers: Views of the host's weights; kept for the pruner's lifetime.
    ///   - criteria: One per layer.
    ///   - selection: `.perRow`, `.perLayer`, `.global` (the sparsity is the schedule's), or `.nm`
    ///     with a one-shot schedule.
    ///   - targets: Per-layer final sparsities (nil: the schedule's); not with `.global`.
    /// - Throws: `PruneKitError` (`.invalidArgument`, `.invalidShape`) for inconsistent arguments.
    public init(layers: [MatrixView], criteria: [PrunerCriterion], selection: Selection, schedule: Schedule,
                targets: [Double]? = nil, options: PrunerOptions = .init()) throws(PruneKitError) {
        guard !layers.isEmpty else { throw .invalidShape("no layers given") }
        guard criteria.count == layers.count else {
            throw .invalidShape("\(layers.count) layers but \(criteria.count) criteria")
        }
        try checkThreads(options.threads)
        try schedule.validate(finals: targets)
        if let targets {
            guard targets.count == layers.count else { throw .invalidShape("\(layers.count) layers but \(targets.count) targets") }
            if case .global = selection {
                throw .invalidArgument("per-layer targets need a per-row or per-layer selection; a global selection has one target")
            }
        }
        if case .nm = selection {
            guard schedule.kind == .oneShot else { throw .invalidArgument("an N:M selection needs a one-shot schedule") }
        }
        try selection.validate()
        guard options.decaySteps >= 0 else { throw .invalidArgument("decay_steps must be >= 0, got \(options.decaySteps)") }
        guard options.gradientMomentum >= 0, options.gradientMomentum < 1 else {
            throw .invalidArgument("gradient_momentum must be in [0, 1), got \(options.gradientMomentum)")
        }
        var features: [ScratchBuffer<Float>?] = []
        for (i, layer) in layers.enumerated() {
            try selection.validate(cols: layer.cols, label: "layer \(i): ")
            switch criteria[i] {
            case .wanda(let values), .stade(let values):
                guard values.count == layer.cols else {
                    throw .invalidShape("layer \(i): \(values.count) feature values for \(layer.cols) columns")
                }
                for (j, v) in values.enumerated() where !v.isFinite || v < 0 {
                    throw .invalidArgument("layer \(i): feature value \(j) is \(v); they must be finite and >= 0")
                }
                let buffer = try ScratchBuffer<Float>(count: values.count)
                buffer.base.update(from: values, count: values.count)
                features.append(buffer)
            default: features.append(nil)
            }
        }
        self.layers = layers
        self.criteria = criteria
        self.selection = selection
        self.schedule = schedule
        self.targets = targets ?? Array(repeating: schedule.finalSparsity, count: layers.count)
        self.options = options
        self.features = features
        states = layers.map { [UInt8](repeating: 0, count: $0.count) }
        let decays = options.decaySteps > 1
        anchors = layers.map { decays ? [Double](repeating: 0, count: $0.count) : [] }
        since = layers.map { decays ? [Int64](repeating: 0, count: $0.count) : [] }
        flow = layers.map { criteria.contains(.gradientFlow) ? [Float](repeating: 0, count: $0.count) : [] }
    }

    /// The scheduled sparsity of `layer` at step `t`.
    public func scheduledSparsity(layer: Int, at t: Int64) -> Double { schedule.sparsity(at: t, final: targets[layer]) }

    /// The decay factor at step `t` of a weight chosen at step `t0`.
    public func decayFactor(at t: Int64, chosenAt t0: Int64) -> Double {
        decays ? max(0, 1 - Double(t - t0 + 1) / Double(options.decaySteps)) : 0
    }

    /// Applies training step `t`: at a new update point of the schedule the masks are recomputed
    /// from the weights as they are (decaying weights at their undecayed values) and the
    /// scheduled sparsity; at every step pruned weights are set to +0.0 and decaying ones to their
    /// value when chosen times the decay factor. A decaying weight the new masks keep is restored.
    /// Everything is checked before any weight is written.
    /// - Parameter gradients: One per layer, same shapes (needed by `.gradientFlow`, else ignored).
    /// - Throws: `.invalidArgument` for a step before the last one, missing gradients; the
    ///   statuses of `pk_mask` for the weights.
    /// The C function is `pk_pruner_step`.
    public mutating func step(_ t: Int64, gradients: [MatrixView]? = nil) throws(PruneKitError) {
        guard t >= 0 else { throw .invalidArgument("step must be >= 0, got \(t)") }
        guard t >= lastStep else { throw .invalidArgument("step \(t) is before the last step applied (\(lastStep))") }
        if let gradients {
            guard gradients.count == layers.count else {
                throw .invalidShape("\(gradients.count) gradients for \(layers.count) layers")
            }
            for (i, g) in gradients.enumerated() where g.rows != layers[i].rows || g.cols != layers[i].cols {
                throw .invalidShape("gradient \(i) is \(g.rows) x \(g.cols), layer \(i) is \(layers[i].rows) x \(layers[i].cols)")
            }
        } else if usesFlow {
            throw .invalidArgument("the gradient-flow criterion needs the gradients of every step")
        }
        // The weights the criteria see: the host's, with decaying entries at their anchors.
        var copies: [ScratchBuffer<UInt8>?] = []
        var views: [MatrixView] = []
        for (l, layer) in layers.enumerated() {
            guard decays, states[l].contains(EntryState.decaying.rawValue) else {
                copies.append(nil)
                views.append(layer)
                continue
            }
            let size = layer.dtype.size
            let copy = try ScratchBuffer<UInt8>(count: try checkedProduct(layer.count, size, "layer \(l)"))
            for r in 0..<layer.rows {
                let row = UnsafeMutableRawPointer(copy.base) + r * layer.cols * size
                row.copyMemory(from: layer.rowAddress(r), byteCount: layer.cols * size)
                for j in 0..<layer.cols where states[l][r * layer.cols + j] == EntryState.decaying.rawValue {
                    storeElement(anchors[l][r * layer.cols + j], layer.dtype, row, j)
                }
            }
            copies.append(copy)
            views.append(try MatrixView(base: UnsafeMutableRawPointer(copy.base), dtype: layer.dtype, rows: layer.rows,
                                        cols: layer.cols, rowStride: layer.cols, name: "layer \(l)"))
        }
        defer { withExtendedLifetime(copies) {} }

        var newFlow = flow
        var flowBuffers: [ScratchBuffer<Float>?] = Array(repeating: nil, count: layers.count)
        if let gradients, usesFlow {
            let beta = Float(options.gradientMomentum)
            for l in 0..<layers.count where criteria[l] == .gradientFlow {
                let scores = try ScratchBuffer<Float>(count: views[l].count)
                try importanceScores(weights: views[l], criterion: .taylor(gradient: gradients[l]), threads: options.threads,
                                     into: scores.base)
                for i in 0..<views[l].count {
                    let e = beta * newFlow[l][i] + (1 - beta) * scores.base[i]
                    newFlow[l][i] = e
                    scores.base[i] = e
                }
                flowBuffers[l] = scores
            }
        }
        defer { withExtendedLifetime(flowBuffers) {} }

        let point = schedule.updatePoint(at: t)
        let recompute = point != nil && point! != lastPoint
        var masks: [[UInt8]] = []
        if recompute {
            var inputs: [(weights: MatrixView, criterion: CriterionView)] = []
            for l in 0..<layers.count {
                switch criteria[l] {
                case .magnitude: inputs.append((views[l], .magnitude))
                case .random(let seed): inputs.append((views[l], .random(seed: seed)))
                case .wanda, .stade:
                    let buffer = UnsafeBufferPointer(start: features[l]!.base, count: views[l].cols)
                    inputs.append((views[l], criteria[l].kind == 2 ? .wanda(featureValues: buffer) : .stade(featureValues: buffer)))
                case .gradientFlow:
                    let scores = try MatrixView(base: UnsafeMutableRawPointer(flowBuffers[l]!.base), dtype: .float32,
                                                rows: views[l].rows, cols: views[l].cols, rowStride: views[l].cols,
                                                name: "layer \(l) gradient-flow scores")
                    inputs.append((scores, .scores))
                }
            }
            masks = layers.map { [UInt8](repeating: 1, count: $0.count) }
            var pointers: [UnsafeMutablePointer<UInt8>] = []
            for l in 0..<masks.count { pointers.append(masks[l].withUnsafeMutableBufferPointer { $0.baseAddress! }) }
            switch selection {
            case .global:
                try pruningMasks(layers: inputs, selection: .global(sparsity: scheduledSparsity(layer: 0, at: t)),
                                 threads: options.threads, into: pointers)
            case .perRow, .perLayer, .nm:
                // Check every layer before any mask is kept.
                for l in 0..<layers.count {
                    let s = scheduledSparsity(layer: l, at: t)
                    let chosen: Selection = switch selection {
                    case .perRow: .perRow(sparsity: s)
                    case .perLayer: .perLayer(sparsity: s)
                    default: selection
                    }
                    try pruningMasks(layers: [inputs[l]], selection: chosen, threads: options.threads, into: [pointers[l]])
                }
            }
        }

        // Nothing below throws: the weights change only now.
        for (l, layer) in layers.enumerated() {
            let cols = layer.cols
            for r in 0..<layer.rows {
                let row = layer.rowAddress(r)
                for j in 0..<cols {
                    let i = r * cols + j
                    var state = EntryState(rawValue: states[l][i])!
                    if recompute {
                        let keep = masks[l][i] != 0
                        switch state {
                        case .kept where !keep:
                            if decays {
                                state = .decaying
                                anchors[l][i] = layer.value(row: r, col: j)
                                since[l][i] = t
                            } else {
                                state = .pruned
                            }
                        case .decaying where keep:
                            storeElement(anchors[l][i], layer.dtype, row, j)
                            state = .kept
                        case .pruned where keep:
                            state = .kept
                        default: break
                        }
                    }
                    if state == .decaying {
                        let f = decayFactor(at: t, chosenAt: since[l][i])
                        if f > 0 {
                            storeElement(anchors[l][i] * f, layer.dtype, row, j)
                        } else {
                            state = .pruned
                        }
                    }
                    if state == .pruned { storeElement(0, layer.dtype, row, j) }
                    states[l][i] = state.rawValue
                }
            }
        }
        flow = newFlow
        lastStep = t
        if recompute { lastPoint = point! }
    }

    /// The current mask of `layer` (1 = kept; decaying and pruned weights are 0).
    /// The C function is `pk_pruner_mask`.
    public func mask(layer: Int) -> [UInt8] { states[layer].map { $0 == EntryState.kept.rawValue ? 1 : 0 } }

    /// The current factor of every weight of `layer`: 1 kept, the decay factor of the last step
    /// for decaying weights, 0 pruned.
    /// The C function is `pk_pruner_factors`.
    public func factors(layer: Int) -> [Float] {
        (0..<states[layer].count).map { i in
            switch EntryState(rawValue: states[layer][i])! {
            case .kept: 1
            case .pruned: 0
            case .decaying: Float(decayFactor(at: lastStep, chosenAt: since[layer][i]))
            }
        }
    }
}

/// Writes `value` (exact for a value read from this dtype) as element `j` of a row.
@inline(__always)
func storeElement(_ value: Double, _ dtype: DType, _ row: UnsafeMutableRawPointer, _ j: Int) {
    switch dtype {
    case .float32: row.assumingMemoryBound(to: Float.self)[j] = Float(value)
    case .float64: row.assumingMemoryBound(to: Double.self)[j] = value
    case .float16: row.assumingMemoryBound(to: UInt16.self)[j] = Float16(value).bitPattern
    case .bfloat16: row.assumingMemoryBound(to: UInt16.self)[j] = BFloat16(Float(value)).bitPattern
    }
}
