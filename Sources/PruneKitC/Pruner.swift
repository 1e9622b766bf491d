// The "pruning over time" functions of prunekit.h: schedules, pk_pruner handles, soft masks and
// the host-driven loops. A pk_pruner handle names a slot of `prunerHandles` (Handles.swift)
// holding a mutex-protected Pruner, so calls on one handle from several threads are serialized.
import CPruneKit
import PruneKit
import Synchronization

/// The pruner and the host's weights it steps (the header: THE POINTERS ARE KEPT).
final class PrunerBox: @unchecked Sendable {
    let state: Mutex<Pruner>
    let weights: [MatrixView]
    init(_ pruner: Pruner, weights: [MatrixView]) {
        state = Mutex(pruner)
        self.weights = weights
    }
}

let prunerHandles = HandleTable<PrunerBox>(tag: 0x9E, kind: "pk_pruner")

func prunerBox(_ handle: OpaquePointer?) throws(PruneKitError) -> PrunerBox {
    guard let handle else { throw nullPointer("pruner") }
    return try prunerHandles.lookup(handle, "pruner")
}

func schedule(_ pointer: UnsafePointer<pk_schedule>?) throws(PruneKitError) -> Schedule {
    let s = try readOptions(pointer, name: "schedule", defaults: scheduleDefaults())
    let kind: ScheduleKind = try enumValue(s.kind, "schedule->kind", "pk_schedule_kind")
    return Schedule(kind: kind, begin: s.begin, end: s.end, frequency: s.frequency,
                    initialSparsity: s.initial_sparsity, finalSparsity: s.final_sparsity)
}

/// Implements `pk_status pk_schedule_init(pk_schedule *schedule)`.
@c @implementation
public func pk_schedule_init(_ schedule: UnsafeMutablePointer<pk_schedule>?) -> pk_status {
    initialize("pk_schedule_init", schedule, "schedule", to: scheduleDefaults())
}

/// Implements `pk_status pk_schedule_sparsity(const pk_schedule *, int64_t step, double *sparsity_out)`.
@c @implementation
public func pk_schedule_sparsity(_ pointer: UnsafePointer<pk_schedule>?, _ step: Int64,
                                 _ sparsityOut: UnsafeMutablePointer<Double>?) -> pk_status {
    run("pk_schedule_sparsity") { () throws(PruneKitError) in
        let s = try schedule(pointer)
        try s.check()
        guard let sparsityOut else { throw nullPointer("sparsity_out") }
        sparsityOut.pointee = s.sparsity(at: step)
    }
}

/// Implements `pk_status pk_pruner_options_init(pk_pruner_options *options)`.
@c @implementation
public func pk_pruner_options_init(_ options: UnsafeMutablePointer<pk_pruner_options>?) -> pk_status {
    initialize("pk_pruner_options_init", options, to: prunerDefaults())
}

func prunerCriterion(_ pointer: UnsafePointer<pk_criterion>?, _ name: String, cols: Int) throws(PruneKitError) -> PrunerCriterion {
    guard let pointer else { return .magnitude }
    let c = try readOptions(pointer, name: name, defaults: criterionDefaults())
    switch UInt32(bitPattern: c.kind) {
    case PK_CRITERION_MAGNITUDE.rawValue: return .magnitude
    case PK_CRITERION_RANDOM.rawValue: return .random(seed: c.seed)
    case PK_CRITERION_TAYLOR.rawValue: return .gradientFlow
    case PK_CRITERION_WANDA.rawValue, PK_CRITERION_STADE.rawValue:
        guard let values = c.feature_values else { throw missingFeatures(name, kind: c.kind) }
        guard c.feature_count == Int64(cols) else {
            throw PruneKitError(.invalidShape, "\(name)->feature_count is \(c.feature_count), the layer has \(cols) columns")
        }
        let copy = Array(UnsafeBufferPointer(start: values, count: cols))
        return c.kind == Int32(PK_CRITERION_WANDA.rawValue) ? .wanda(featureNorms: copy) : .stade(featureStd: copy)
    case PK_CRITERION_SCORES.rawValue:
        throw PruneKitError(.invalidArgument, "\(name)->kind PK_CRITERION_SCORES does not change over steps; use pk_mask")
    default:
        throw PruneKitError(.invalidArgument, "\(name)->kind \(c.kind) is not a pk_criterion_kind")
    }
}

/// Implements `pk_status pk_pruner_create(...)`.
@c @implementation
public func pk_pruner_create(_ weights: UnsafePointer<pk_matrix>?, _ layerCount: Int64,
                             _ criteria: UnsafePointer<UnsafePointer<pk_criterion>?>?,
                             _ selection: UnsafePointer<pk_selection>?, _ schedulePointer: UnsafePointer<pk_schedule>?,
                             _ layerTargets: UnsafePointer<Double>?, _ options: UnsafePointer<pk_pruner_options>?,
                             _ prunerOut: UnsafeMutablePointer<OpaquePointer?>?) -> pk_status {
    run("pk_pruner_create") { () throws(PruneKitError) in
        guard let weights else { throw nullPointer("weights") }
        guard layerCount > 0, layerCount <= 1 << 24 else {
            throw PruneKitError(.invalidShape, "layer_count must be in 1...2^24, got \(layerCount)")
        }
        let (s, selectionThreads) = try PruneKitC.selection(selection)
        let plan = try schedule(schedulePointer)
        // soft_temperature was appended: a caller of the first layout (struct_size up to reserved) gets hard masks.
        let o = try readOptions(options, name: "options", defaults: prunerDefaults(),
                                minimum: MemoryLayout<pk_pruner_options>.offset(of: \pk_pruner_options.soft_temperature)!)
        guard let prunerOut else { throw nullPointer("pruner_out") }
        var views: [MatrixView] = [], kinds: [PrunerCriterion] = []
        for i in 0..<Int(layerCount) {
            let view = try matrixView(weights[i], "weights[\(i)]")
            views.append(view)
            kinds.append(try prunerCriterion(criteria?[i], "criteria[\(i)]", cols: view.cols))
        }
        let targets = layerTargets.map { Array(UnsafeBufferPointer(start: $0, count: Int(layerCount))) }
        // options->num_threads when set, else the selection's.
        let threads = o.num_threads != 0 ? Int(o.num_threads) : selectionThreads
        let pruner = try Pruner(layers: views.map(PrunedLayer.init), criteria: kinds, selection: s, schedule: plan,
                                targets: targets,
                                options: PrunerOptions(decaySteps: o.decay_steps, gradientMomentum: o.gradient_momentum,
                                                       threads: threads, softTemperature: o.soft_temperature))
        prunerOut.pointee = prunerHandles.insert(PrunerBox(pruner, weights: views))
    }
}

/// Implements `void pk_pruner_free(pk_pruner *pruner)`.
@c @implementation
public func pk_pruner_free(_ pruner: OpaquePointer?) {
    guard let pruner else { return }
    prunerHandles.remove(pruner)
}

/// Implements `pk_status pk_pruner_step(pk_pruner *, int64_t step, const pk_matrix *gradients)`.
@c @implementation
public func pk_pruner_step(_ pruner: OpaquePointer?, _ step: Int64, _ gradients: UnsafePointer<pk_matrix>?) -> pk_status {
    run("pk_pruner_step") { () throws(PruneKitError) in
        let box = try prunerBox(pruner)
        try box.state.withLock { (p: inout Pruner) throws(PruneKitError) in
            let grads = try gradients.map { (g) throws(PruneKitError) in try matrixViews(g, count: p.layers.count, "gradients") }
            try p.step(step, weights: box.weights, gradients: grads)
        }
    }
}

func layerIndex(_ p: Pruner, _ layer: Int64, _ length: Int64) throws(PruneKitError) -> Int {
    guard layer >= 0, layer < Int64(p.layers.count) else {
        throw PruneKitError(.invalidArgument, "layer \(layer) is out of range (the pruner has \(p.layers.count) layers)")
    }
    let n = p.layers[Int(layer)].count
    guard length == Int64(n) else {
        throw PruneKitError(.invalidShape, "length is \(length), layer \(layer) has \(n) entries")
    }
    return Int(layer)
}

/// The body of the per-layer readers: the handle, then the output argument `outName`, then the
/// layer and length are checked; `copy` runs under the pruner's lock.
func readLayer<T>(_ function: StaticString, _ pruner: OpaquePointer?, _ layer: Int64, _ length: Int64,
                  _ out: UnsafeMutablePointer<T>?, _ outName: String,
                  _ copy: (Pruner, Int, UnsafeMutablePointer<T>) -> Void) -> pk_status {
    run(function) { () throws(PruneKitError) in
        let box = try prunerBox(pruner)
        guard let out else { throw nullPointer(outName) }
        try box.state.withLock { (p: inout Pruner) throws(PruneKitError) in copy(p, try layerIndex(p, layer, length), out) }
    }
}

/// Implements `pk_status pk_pruner_mask(const pk_pruner *, int64_t layer, uint8_t *mask_out, int64_t length)`.
@c @implementation
public func pk_pruner_mask(_ pruner: OpaquePointer?, _ layer: Int64, _ maskOut: UnsafeMutablePointer<UInt8>?,
                           _ length: Int64) -> pk_status {
    readLayer("pk_pruner_mask", pruner, layer, length, maskOut, "mask_out") { p, l, out in
        out.update(from: p.maskBytes(layer: l), count: p.layers[l].count)
    }
}

/// Implements `pk_status pk_pruner_factors(const pk_pruner *, int64_t layer, float *factors_out, int64_t length)`.
@c @implementation
public func pk_pruner_factors(_ pruner: OpaquePointer?, _ layer: Int64, _ factorsOut: UnsafeMutablePointer<Float>?,
                              _ length: Int64) -> pk_status {
    readLayer("pk_pruner_factors", pruner, layer, length, factorsOut, "factors_out") { p, l, out in
        out.update(from: p.factorValues(layer: l), count: p.layers[l].count)
    }
}

/// Implements `pk_status pk_pruner_soft_mask(const pk_pruner *, int64_t layer, float *mask_out, float *derivative_out, int64_t length)`.
@c @implementation
public func pk_pruner_soft_mask(_ pruner: OpaquePointer?, _ layer: Int64, _ maskOut: UnsafeMutablePointer<Float>?,
                                _ derivativeOut: UnsafeMutablePointer<Float>?, _ length: Int64) -> pk_status {
    readLayer("pk_pruner_soft_mask", pruner, layer, length, maskOut, "mask_out") { p, l, out in
        let (mask, derivative) = p.softMaskValues(layer: l)
        out.update(from: mask, count: mask.count)
        derivativeOut?.update(from: derivative, count: derivative.count)
    }
}

/// Implements `pk_status pk_pruner_serialized_size(const pk_pruner *, size_t *size_out)`.
@c @implementation
public func pk_pruner_serialized_size(_ pruner: OpaquePointer?, _ sizeOut: UnsafeMutablePointer<Int>?) -> pk_status {
    run("pk_pruner_serialized_size") { () throws(PruneKitError) in
        let box = try prunerBox(pruner)
        guard let sizeOut else { throw nullPointer("size_out") }
        sizeOut.pointee = box.state.withLock { $0.serializedSize }
    }
}

/// Implements `pk_status pk_pruner_serialize(const pk_pruner *, void *buffer, size_t capacity, size_t *written_out)`.
@c @implementation
public func pk_pruner_serialize(_ pruner: OpaquePointer?, _ buffer: UnsafeMutableRawPointer?, _ capacity: Int,
                                _ writtenOut: UnsafeMutablePointer<Int>?) -> pk_status {
    run("pk_pruner_serialize") { () throws(PruneKitError) in
        let box = try prunerBox(pruner)
        guard let buffer else { throw nullPointer("buffer") }
        guard let writtenOut else { throw nullPointer("written_out") }
        let bytes = box.state.withLock { $0.serialized() }
        guard capacity >= bytes.count else {
            throw PruneKitError(.bufferTooSmall, "capacity \(capacity) is smaller than the \(bytes.count) bytes needed")
        }
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        writtenOut.pointee = bytes.count
    }
}

/// Implements `pk_status pk_pruner_restore(pk_pruner *, const void *buffer, size_t size)`.
@c @implementation
public func pk_pruner_restore(_ pruner: OpaquePointer?, _ buffer: UnsafeRawPointer?, _ size: Int) -> pk_status {
    run("pk_pruner_restore") { () throws(PruneKitError) in
        let box = try prunerBox(pruner)
        guard let buffer else { throw nullPointer("buffer") }
        try box.state.withLock { (p: inout Pruner) throws(PruneKitError) in
            try p.restore(from: UnsafeRawBufferPointer(start: buffer, count: size))
        }
    }
}

/// Implements `pk_status pk_soft_mask(const pk_matrix *, const pk_selection *, double temperature,
/// float *mask_out, float *derivative_out)`.
@c @implementation
public func pk_soft_mask(_ weights: UnsafePointer<pk_matrix>?, _ selection: UnsafePointer<pk_selection>?,
                         _ temperature: Double, _ maskOut: UnsafeMutablePointer<Float>?,
                         _ derivativeOut: UnsafeMutablePointer<Float>?) -> pk_status {
    run("pk_soft_mask") { () throws(PruneKitError) in
        let view = try matrixView(weights, "weights")
        let (s, threads) = try PruneKitC.selection(selection)
        guard let maskOut else { throw nullPointer("mask_out") }
        try softMask(weights: view, selection: s, temperature: temperature, threads: threads, into: maskOut,
                     derivative: derivativeOut)
    }
}

/// Implements `pk_status pk_progressive_options_init(pk_progressive_options *options)`.
@c @implementation
public func pk_progressive_options_init(_ options: UnsafeMutablePointer<pk_progressive_options>?) -> pk_status {
    initialize("pk_progressive_options_init", options, to: progressiveDefaults())
}

/// Implements `pk_status pk_progressive_structures(...)`.
@c @implementation
public func pk_progressive_structures(_ groups: UnsafePointer<pk_group>?, _ groupCount: Int64,
                                      _ scoring: UnsafePointer<pk_structure_options>?,
                                      _ options: UnsafePointer<pk_progressive_options>?, _ evaluate: pk_evaluate_fn?,
                                      _ userData: UnsafeMutableRawPointer?, _ keepOut: UnsafeMutablePointer<UInt8>?,
                                      _ protectedOut: UnsafeMutablePointer<UInt8>?,
                                      _ resultOut: UnsafeMutablePointer<pk_progressive_result>?) -> pk_status {
    run("pk_progressive_structures") { () throws(PruneKitError) in
        let (o, given) = try structureOptions(scoring)
        let views = try groupViews(groups, groupCount, criterion: o.criterion)
        let p = try readOptions(options, name: "options", defaults: progressiveDefaults())
        guard let evaluate else { throw nullPointer("evaluate") }
        guard let keepOut else { throw nullPointer("keep_out") }
        let result = try progressiveStructurePruning(
            groups: views, scoring: o, scores: try givenScores(given, views),
            options: ProgressiveOptions(targetRatio: p.target_ratio, stepRatio: p.step_ratio, tolerance: p.tolerance)
        ) { (keep) throws(PruneKitError) -> Double in
            var cost = Double.nan
            let code = evaluate(userData, keep.baseAddress, Int64(keep.count), &cost)
            guard code == 0 else { throw PruneKitError(.cancelled, "the evaluate callback returned \(code)") }
            return cost
        }
        keepOut.update(from: result.keep, count: result.keep.count)
        protectedOut?.update(from: result.protected, count: result.protected.count)
        resultOut?.pointee = pk_progressive_result(
            pruned: Int64(result.pruned), evaluations: Int64(result.evaluations), accepted: Int64(result.accepted),
            rejected: Int64(result.rejected), stop: result.stop.rawValue, reserved: 0,
            baseline_cost: result.baselineCost, final_cost: result.finalCost)
    }
}

/// Implements `pk_status pk_sensitivity_ratios(...)`.
@c @implementation
public func pk_sensitivity_ratios(_ layerSizes: UnsafePointer<Int64>?, _ layerCount: Int64,
                                  _ probeRatios: UnsafePointer<Double>?, _ probeCount: Int64, _ target: Double,
                                  _ evaluate: pk_sensitivity_fn?, _ userData: UnsafeMutableRawPointer?,
                                  _ ratiosOut: UnsafeMutablePointer<Double>?, _ countsOut: UnsafeMutablePointer<Int64>?) -> pk_status {
    run("pk_sensitivity_ratios") { () throws(PruneKitError) in
        guard let layerSizes else { throw nullPointer("layer_sizes") }
        guard let probeRatios else { throw nullPointer("probe_ratios") }
        guard layerCount > 0, layerCount <= 1 << 24 else {
            throw PruneKitError(.invalidShape, "layer_count must be in 1...2^24, got \(layerCount)")
        }
        guard probeCount > 0, probeCount <= 1 << 16 else {
            throw PruneKitError(.invalidShape, "probe_count must be in 1...65536, got \(probeCount)")
        }
        guard let evaluate else { throw nullPointer("evaluate") }
        guard let ratiosOut else { throw nullPointer("ratios_out") }
        var sizes: [Int] = []
        for i in 0..<Int(layerCount) {
            guard layerSizes[i] > 0, layerSizes[i] <= Int64(1) << 48 else {
                throw PruneKitError(.invalidShape, "layer_sizes[\(i)] is \(layerSizes[i])")
            }
            sizes.append(Int(layerSizes[i]))
        }
        let (ratios, counts) = try sensitivityRatios(
            layerSizes: sizes, probes: Array(UnsafeBufferPointer(start: probeRatios, count: Int(probeCount))), target: target
        ) { (layer, ratio) throws(PruneKitError) -> Double in
            var damage = Double.nan
            let code = evaluate(userData, Int64(layer), ratio, &damage)
            guard code == 0 else { throw PruneKitError(.cancelled, "the evaluate callback returned \(code) (layer \(layer), ratio \(ratio))") }
            return damage
        }
        ratiosOut.update(from: ratios, count: ratios.count)
        if let countsOut { for (i, c) in counts.enumerated() { countsOut[i] = Int64(c) } }
    }
}
