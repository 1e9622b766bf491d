#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

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
    /// Soft mode (PDP) when > 0: before the schedule's end the pruner writes no weight; at every
    /// step it computes each weight's soft mask m = 1 / (1 + exp(-(q - t^2) / T)) and dm/dw for
    /// the host, which applies w * m(w) and back-propagates through it. q is the squared score
    /// of the criterion (w^2 magnitude, (|w| f)^2 Wanda / STADE, e^2 gradient flow) and t^2 the
    /// midpoint between the largest q the step's hard mask prunes and the smallest it keeps. At
    /// the first step >= the schedule's end the masks are hardened: the hard mask at the final
    /// sparsity (exact count) is applied to the weights as in the hard mode. 0 = off.
    public var softTemperature: Double

    public init(decaySteps: Int64 = 0, gradientMomentum: Double = 0.9, threads: Int = 0, softTemperature: Double = 0) {
        self.decaySteps = decaySteps
        self.gradientMomentum = gradientMomentum
        self.threads = threads
        self.softTemperature = softTemperature
    }
}

/// Per-entry state of a progressive pruner.
enum EntryState: UInt8 {
    case kept = 0, decaying = 1, pruned = 2
}

/// The shape and dtype of a layer a `Pruner` follows.
package struct PrunedLayer: Sendable, Equatable {
    package let rows: Int
    package let cols: Int
    package let dtype: DType
    package var count: Int { rows * cols }

    package init(rows: Int, cols: Int, dtype: DType) {
        self.rows = rows
        self.cols = cols
        self.dtype = dtype
    }

    package init(_ view: MatrixView) { self.init(rows: view.rows, cols: view.cols, dtype: view.dtype) }
}

/// A pruner that follows a sparsity schedule over training steps. It holds the masks, the
/// schedule position and the decay and gradient-flow state, not the weights: every `step` is
/// given the weights (the same shapes and dtypes every time) and writes them. Masks come from
/// the library's own criteria and selections (`pruningMasks`), so a mask at step t is the
/// one-shot mask of the weights at t's scheduled sparsity.
///
///     var pruner = try Pruner(weights: layers, selection: .perRow(sparsity: 0),
///                             schedule: Schedule(kind: .cubic, end: 1000, frequency: 100, finalSparsity: 0.8))
///     for t in 0..<steps { train(&layers); try pruner.step(Int64(t), weights: &layers) }
///
/// The C handle is `pk_pruner` (it keeps the host's buffers and passes them to every step).
public struct Pruner: @unchecked Sendable {
    package let layers: [PrunedLayer]
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
    /// Soft mode: the soft mask and dm/dw of the last step (empty arrays otherwise).
    var softValues: [[Float]]
    var softDerivatives: [[Float]]
    /// The last step applied (-1: none), and the update point of the current masks (-1: none).
    public internal(set) var lastStep: Int64 = -1
    package internal(set) var lastPoint: Int64 = -1

    var decays: Bool { options.decaySteps > 1 }
    var usesFlow: Bool { criteria.contains(.gradientFlow) }
    /// Soft mode (PDP), see `PrunerOptions.softTemperature`.
    public var isSoft: Bool { options.softTemperature > 0 }
    /// Soft mode only: whether the masks have been hardened (a step >= the schedule's end was applied).
    public var isHardened: Bool { isSoft && lastStep >= schedule.end }

    /// - Parameters:
    ///   - layers: The shapes and dtypes of the weights every step is given.
    ///   - criteria: One per layer.
    ///   - selection: `.perRow`, `.perLayer`, `.global` (the sparsity is the schedule's), or `.nm`
    ///     with a one-shot schedule.
    ///   - targets: Per-layer final sparsities (nil: the schedule's); not with `.global`.
    /// - Throws: `PruneKitError` (`.invalidArgument`, `.invalidShape`) for inconsistent arguments.
    package init(layers: [PrunedLayer], criteria: [PrunerCriterion], selection: Selection, schedule: Schedule,
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
        guard options.softTemperature.isFinite, options.softTemperature >= 0 else {
            throw .invalidArgument("soft_temperature must be finite and >= 0 (0 = hard masks), got \(options.softTemperature)")
        }
        if options.softTemperature > 0 {
            guard options.decaySteps <= 1 else {
                throw .invalidArgument("soft masks and decaying masks exclude each other (soft_temperature > 0 with decay_steps \(options.decaySteps))")
            }
            if case .nm = selection { throw .invalidArgument("soft masks take a per-row, per-layer or global selection, not N:M") }
            if let bad = criteria.firstIndex(where: { if case .random = $0 { true } else { false } }) {
                throw .invalidArgument("layer \(bad): soft masks need a criterion that depends on the weights (magnitude, Wanda, STADE or gradient flow), not random")
            }
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
        let soft = options.softTemperature > 0
        softValues = layers.map { soft ? [Float](repeating: 1, count: $0.count) : [] }
        softDerivatives = layers.map { soft ? [Float](repeating: 0, count: $0.count) : [] }
    }

    /// The scheduled sparsity of `layer` at step `t`.
    public func scheduledSparsity(layer: Int, at t: Int64) -> Double { schedule.sparsity(at: t, final: targets[layer]) }

    /// The decay factor at step `t` of a weight chosen at step `t0`.
    package func decayFactor(at t: Int64, chosenAt t0: Int64) -> Double {
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
    package mutating func step(_ t: Int64, weights layers: [MatrixView], gradients: [MatrixView]? = nil) throws(PruneKitError) {
        guard t >= 0 else { throw .invalidArgument("step must be >= 0, got \(t)") }
        guard t >= lastStep else { throw .invalidArgument("step \(t) is before the last step applied (\(lastStep))") }
        guard layers.count == self.layers.count else {
            throw .invalidShape("\(layers.count) weight matrices for a pruner of \(self.layers.count) layers")
        }
        for (l, layer) in layers.enumerated() where PrunedLayer(layer) != self.layers[l] {
            let want = self.layers[l]
            throw .invalidShape("weights \(l) are \(layer.rows) x \(layer.cols) \(layer.dtype), the pruner's layer \(l) is "
                                + "\(want.rows) x \(want.cols) \(want.dtype)")
        }
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
        defer { keepAlive(copies) }

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
        defer { keepAlive(flowBuffers) }

        let point = schedule.updatePoint(at: t)
        // Soft mode: masks at every step before the end (weights untouched), hardened at the first step from the end on.
        let softStep = isSoft && t < schedule.end
        let recompute = softStep || (isSoft && !isHardened) || (point != nil && point! != lastPoint)
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
            // Into buffers that own their memory (an array's base address is only valid inside its
            // withUnsafeMutableBufferPointer), copied into the arrays once every layer succeeded.
            var buffers: [ScratchBuffer<UInt8>] = []
            for layer in layers { buffers.append(try ScratchBuffer<UInt8>(repeating: 1, count: layer.count)) }
            defer { keepAlive(buffers) }
            let pointers = buffers.map(\.base)
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
            masks = buffers.map { Array(UnsafeBufferPointer(start: $0.base, count: $0.count)) }
        }
        if softStep {
            let (values, derivatives) = softMasks(views: views, masks: masks, flow: newFlow, gradients: gradients)
            // Nothing below throws. The weights are the host's to multiply by the soft masks.
            for l in 0..<layers.count {
                for i in 0..<masks[l].count { states[l][i] = masks[l][i] != 0 ? EntryState.kept.rawValue : EntryState.pruned.rawValue }
            }
            softValues = values
            softDerivatives = derivatives
            flow = newFlow
            lastStep = t
            if let point { lastPoint = point }
            return
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
        if isSoft {
            for l in 0..<layers.count {
                for i in 0..<states[l].count {
                    let kept = states[l][i] == EntryState.kept.rawValue
                    softValues[l][i] = kept ? 1 : 0
                    softDerivatives[l][i] = 0
                }
            }
        }
        flow = newFlow
        lastStep = t
        if recompute { lastPoint = point! }
    }

    /// The soft masks and their derivatives for the step's hard masks (see `PrunerOptions.softTemperature`).
    func softMasks(views: [MatrixView], masks: [[UInt8]], flow: [[Float]], gradients: [MatrixView]?) -> ([[Float]], [[Float]]) {
        let temperature = options.softTemperature
        let beta = options.gradientMomentum
        // Groups: a row, a layer, or every layer together.
        func groupCount(_ l: Int) -> Int {
            switch selection {
            case .perRow: views[l].rows
            default: 1
            }
        }
        var offsets: [Int] = []
        var total = 0
        for l in 0..<views.count {
            if case .global = selection { offsets.append(0); total = 1; continue }
            offsets.append(total)
            total += groupCount(l)
        }
        var largestPruned = [Double](repeating: -.infinity, count: total)
        var smallestKept = [Double](repeating: .infinity, count: total)
        // The squared score q of an entry and dq/dw.
        func score(_ l: Int, _ r: Int, _ j: Int) -> (q: Double, slope: Double) {
            let w = views[l].value(row: r, col: j)
            switch criteria[l] {
            case .magnitude, .random:
                return (w * w, 2 * w)
            case .wanda, .stade:
                let f = Double(features[l]!.base[j])
                return (w * w * f * f, 2 * w * f * f)
            case .gradientFlow:
                // e = beta e' + (1 - beta) |w g|: de/dw = (1 - beta) |g| sign(w), the gradient held fixed.
                let e = Double(flow[l][r * views[l].cols + j])
                let g = gradients.map { abs($0[l].value(row: r, col: j)) } ?? 0
                return (e * e, 2 * e * (1 - beta) * g * (w > 0 ? 1 : w < 0 ? -1 : 0))
            }
        }
        for (l, view) in views.enumerated() {
            for r in 0..<view.rows {
                let group = offsets[l] + (groupCount(l) > 1 ? r : 0)
                for j in 0..<view.cols {
                    let q = score(l, r, j).q
                    if masks[l][r * view.cols + j] == 0 {
                        largestPruned[group] = max(largestPruned[group], q)
                    } else {
                        smallestKept[group] = min(smallestKept[group], q)
                    }
                }
            }
        }
        var values: [[Float]] = [], derivatives: [[Float]] = []
        for (l, view) in views.enumerated() {
            var m = [Float](repeating: 1, count: view.count), d = [Float](repeating: 0, count: view.count)
            for r in 0..<view.rows {
                let group = offsets[l] + (groupCount(l) > 1 ? r : 0)
                let lo = largestPruned[group], hi = smallestKept[group]
                if lo == -.infinity { continue }          // nothing pruned: m = 1
                for j in 0..<view.cols {
                    let i = r * view.cols + j
                    if hi == .infinity { m[i] = 0; continue }  // everything pruned: m = 0
                    let (q, slope) = score(l, r, j)
                    let threshold: Double = (lo + hi) / 2
                    let z: Double = (q - threshold) / temperature
                    let value: Double = 1 / (1 + exp(-z))
                    m[i] = Float(value)
                    d[i] = Float(value * (1 - value) * slope / temperature)
                }
            }
            values.append(m)
            derivatives.append(d)
        }
        return (values, derivatives)
    }

    /// Soft mode: the soft mask and dm/dw of every weight of `layer` at the last step (before any
    /// step: 1 and 0; once hardened: the binary mask and 0). Not soft: the factors and 0.
    /// The C function is `pk_pruner_soft_mask`.
    package func softMaskValues(layer: Int) -> (mask: [Float], derivative: [Float]) {
        guard isSoft else { return (factorValues(layer: layer), [Float](repeating: 0, count: states[layer].count)) }
        return (softValues[layer], softDerivatives[layer])
    }

    /// The current mask of `layer` (1 = kept; decaying and pruned weights are 0).
    /// The C function is `pk_pruner_mask`.
    package func maskBytes(layer: Int) -> [UInt8] { states[layer].map { $0 == EntryState.kept.rawValue ? 1 : 0 } }

    /// The current factor of every weight of `layer`: 1 kept, the decay factor of the last step
    /// for decaying weights, 0 pruned.
    /// The C function is `pk_pruner_factors`.
    package func factorValues(layer: Int) -> [Float] {
        if isSoft { return softValues[layer] }
        return (0..<states[layer].count).map { i in
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
