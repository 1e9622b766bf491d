// The values the pk_*_init functions fill in. Each is the Swift option type's default (its
// initializer's default arguments), so a default is written once, in the core. Only pk_criterion
// and pk_selection, which have no Swift option type, keep theirs here.
import CPruneKit
import PruneKit

func criterionDefaults() -> pk_criterion {
    pk_criterion(struct_size: MemoryLayout<pk_criterion>.size, kind: Int32(PK_CRITERION_MAGNITUDE.rawValue),
                 reserved: 0, feature_values: nil, feature_count: 0, gradient: nil, seed: 0)
}

func selectionDefaults() -> pk_selection {
    pk_selection(struct_size: MemoryLayout<pk_selection>.size, scope: Int32(PK_SCOPE_ROW.rawValue),
                 num_threads: 0, sparsity: 0.5, n: 2, m: 4)
}

/// The scope, sparsity and N:M fields of a pattern; the fields it does not use hold
/// pk_selection_init's values.
func patternFields(_ scope: pk_scope, sparsity: Double? = nil, n: Int? = nil, m: Int? = nil)
    -> (scope: Int32, sparsity: Double, n: Int32, m: Int32) {
    let s = selectionDefaults()
    return (Int32(scope.rawValue), sparsity ?? s.sparsity, n.map(Int32.init) ?? s.n, m.map(Int32.init) ?? s.m)
}

func scheduleDefaults() -> pk_schedule {
    let s = Schedule()
    return .init(struct_size: MemoryLayout<pk_schedule>.size, kind: s.kind.rawValue, reserved: 0, begin: s.begin, end: s.end,
                 frequency: s.frequency, initial_sparsity: s.initialSparsity, final_sparsity: s.finalSparsity)
}

func prunerDefaults() -> pk_pruner_options {
    let o = PrunerOptions()
    return .init(struct_size: MemoryLayout<pk_pruner_options>.size, decay_steps: o.decaySteps, gradient_momentum: o.gradientMomentum,
                 num_threads: Int32(o.threads), reserved: 0, soft_temperature: o.softTemperature)
}

func progressiveDefaults() -> pk_progressive_options {
    let o = ProgressiveOptions()
    return .init(struct_size: MemoryLayout<pk_progressive_options>.size, target_ratio: o.targetRatio, step_ratio: o.stepRatio,
                 tolerance: o.tolerance)
}

func reconstructionDefaults() -> pk_reconstruction_options {
    let o = ReconstructionOptions()
    let p = switch o.pattern {
    case .unstructured(let s): patternFields(PK_SCOPE_LAYER, sparsity: s)
    case .nm(let n, let m): patternFields(PK_SCOPE_NM, n: n, m: m)
    }
    return pk_reconstruction_options(
        struct_size: MemoryLayout<pk_reconstruction_options>.size, scope: p.scope, precision: o.precision.rawValue,
        sparsity: p.sparsity, n: p.n, m: p.m, block_size: Int64(o.blockSize), dampening: o.dampening,
        max_dampening_retries: Int32(o.maxDampeningRetries), num_threads: Int32(o.threads))
}

func admmDefaults() -> pk_admm_options {
    let o = ADMMOptions()
    let p = switch o.pattern {
    case .layer(let s): patternFields(PK_SCOPE_LAYER, sparsity: s)
    case .row(let s): patternFields(PK_SCOPE_ROW, sparsity: s)
    case .nm(let n, let m): patternFields(PK_SCOPE_NM, n: n, m: m)
    }
    return pk_admm_options(
        struct_size: MemoryLayout<pk_admm_options>.size, scope: p.scope, precision: o.precision.rawValue,
        sparsity: p.sparsity, n: p.n, m: p.m, iterations: Int32(o.iterations), ramp_iterations: Int32(o.rampIterations),
        rho: o.rho, rho_growth: o.rhoGrowth, rho_interval: Int32(o.rhoInterval), refine_iterations: Int32(o.refineIterations),
        dampening: o.dampening, num_threads: Int32(o.threads))
}

func swapDefaults() -> pk_swap_options {
    let o = SwapOptions()
    let p = switch o.pattern {
    case .row: patternFields(PK_SCOPE_ROW)
    case .nm(let n, let m): patternFields(PK_SCOPE_NM, n: n, m: m)
    }
    return .init(struct_size: MemoryLayout<pk_swap_options>.size, scope: p.scope, n: p.n, m: p.m, max_swaps: Int32(o.maxSwaps),
                 candidates: Int32(o.candidates), num_threads: Int32(o.threads))
}

func lowRankDefaults() -> pk_low_rank_options {
    let o = LowRankOptions()
    return .init(struct_size: MemoryLayout<pk_low_rank_options>.size, rank: Int64(o.rank), energy: o.energy, dampening: o.dampening,
                 max_dampening_retries: Int32(o.maxDampeningRetries), num_threads: Int32(o.threads))
}

func permutationDefaults() -> pk_permutation_options {
    let o = PermutationOptions()
    return .init(struct_size: MemoryLayout<pk_permutation_options>.size, n: Int32(o.n), m: Int32(o.m), segment: Int64(o.segment),
                 max_swaps: Int64(o.maxSwaps), time_limit: o.timeLimit, num_threads: Int32(o.threads), reserved: 0)
}

func structureDefaults() -> pk_structure_options {
    let o = StructureOptions()
    return pk_structure_options(
        struct_size: MemoryLayout<pk_structure_options>.size, criterion: o.criterion.rawValue, reduction: o.reduction.rawValue,
        normalization: o.normalization.rawValue, mode: o.mode.rawValue, ratio: o.ratio, stage_values: nil, stage_count: 0,
        multiple: Int64(o.multiple), scores: nil, num_threads: Int32(o.threads), reserved: 0)
}

/// The member indices have no default (-1: not set); epsilon, dampening and activation are the
/// Swift `DataFreeCompensation`'s.
func dataFreeDefaults() -> pk_data_free_options {
    let o = DataFreeCompensation(producer: -1, next: -1, batchNormWeight: -1, batchNormBias: -1, batchNormMean: -1,
                                 batchNormVariance: -1)
    return pk_data_free_options(
        struct_size: MemoryLayout<pk_data_free_options>.size, producer: Int64(o.producer), next: Int64(o.next),
        bn_weight: Int64(o.batchNormWeight), bn_bias: Int64(o.batchNormBias), bn_mean: Int64(o.batchNormMean),
        bn_var: Int64(o.batchNormVariance), epsilon: o.epsilon, dampening: o.dampening, activation: o.activation.rawValue,
        num_threads: 0)
}
