#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import COpenBLAS

/// Data-free compensation of pruned batch-normalised channels (UDFC, Bai et al., "Unified
/// Data-Free Compression: Pruning and Quantization without Fine-Tuning", ICCV 2023): when output
/// channels of a layer followed by batch norm (and an activation) are pruned, the next layer
/// takes over their contribution as a linear combination of the kept channels,
/// W'[:, k] += sum_p s[k, p] W'[:, p], from the weights and the batch-norm statistics alone.
///
/// The coefficients are the least-squares reconstruction of each pruned channel's output
/// a_p = act(y_p) from the kept channels' outputs plus a constant, E[(a_p - sum_k s_kp a_k - t_p)^2]
/// minimal, under a model built from the layer itself (no calibration data):
/// - y_c (the batch norm's output) is Gaussian with mean beta_c and standard deviation
///   |gamma_c| sqrt(var_c / (var_c + eps)) (what batch norm makes of its input's running statistics);
/// - the layer's inputs are isotropic, so two channels' pre-activations correlate as the cosine of
///   their filters (the producer's rows), with the sign of gamma_i gamma_j;
/// - through ReLU the means and variances are the rectified Gaussian's, exactly, and the cross
///   covariances Phi(beta_i / sd_i) Phi(beta_j / sd_j) cov(y_i, y_j) (Stein's lemma gives
///   cov(relu(y_i), y_j) = Phi_i cov(y_i, y_j) exactly; the second factor is its first-order
///   extension), which keeps the covariance positive semi-definite.
/// Then s = (C_KK + lambda I)^-1 C_KP (lambda = dampening x the mean of C_KK's diagonal) and
/// t_p = E[a_p] - sum_k s_kp E[a_k]; the constant reaches the next layer's bias as
/// shift_r = sum_p t_p sum_e W'[r, p * span + e] (e over the span, e.g. a conv's kh * kw: exact
/// away from zero padding).
public enum DataFreeActivation: Int32, Sendable {
    /// ReLU between the batch norm and the next layer (conv -> BN -> ReLU -> conv).
    case relu = 0
    /// No activation (linear -> BN -> linear): the reconstruction is then the exact Gaussian one.
    case identity = 1
}

/// Which members of a group are the producing layer, the batch norm and the next layer.
public struct DataFreeCompensation: Sendable, Equatable {
    /// The `.rows` member whose structures are the pruned channels' filters (the producing layer).
    public var producer: Int
    /// The `.cols` member that is compensated (the next layer, whose inputs are removed).
    public var next: Int
    /// The batch norm's scale (gamma), shift (beta), running mean and running variance: 1 x n members.
    public var batchNormWeight: Int
    public var batchNormBias: Int
    public var batchNormMean: Int
    public var batchNormVariance: Int
    /// The batch norm's epsilon, finite and >= 0 (PyTorch's default 1e-5).
    public var epsilon: Double
    /// Ridge added to the kept channels' covariance as a fraction of its mean diagonal, finite and
    /// >= 0; needed when more channels are kept than the filters have entries.
    public var dampening: Double
    public var activation: DataFreeActivation

    public init(producer: Int, next: Int, batchNormWeight: Int, batchNormBias: Int, batchNormMean: Int,
                batchNormVariance: Int, epsilon: Double = 1e-5, dampening: Double = 0.01,
                activation: DataFreeActivation = .relu) {
        self.producer = producer
        self.next = next
        self.batchNormWeight = batchNormWeight
        self.batchNormBias = batchNormBias
        self.batchNormMean = batchNormMean
        self.batchNormVariance = batchNormVariance
        self.epsilon = epsilon
        self.dampening = dampening
        self.activation = activation
    }
}

/// The closed-form coefficients of one selection.
public struct DataFreeCoefficients: Sendable, Equatable {
    /// The kept and the pruned structure indices, increasing.
    public var kept: [Int]
    public var pruned: [Int]
    /// kept.count x pruned.count, row-major: scales[k * pruned.count + p] = s[kept[k], pruned[p]].
    public var scales: [Double]
    /// One per pruned channel: the constant t_p.
    public var shifts: [Double]
}

/// The UDFC coefficients of a selection (see `DataFreeActivation` for the closed form). Checks
/// the members named by `options` and the batch-norm statistics (finite, variance >= 0, var + eps
/// > 0); nothing is written.
/// - Throws: `.invalidArgument` (members of the wrong kind, bad keep bytes, nothing kept, bad
///   epsilon or dampening, a negative variance), `.invalidShape`, `.nonFinite`, `.numeric` (the
///   kept channels' covariance is singular: raise the dampening).
package func dataFreeCoefficients(_ group: StructureGroupView, keep: UnsafePointer<UInt8>,
                                 options: DataFreeCompensation) throws(PruneKitError) -> DataFreeCoefficients {
    let (n, kept) = try checkSelection(group, keep: keep)
    guard !kept.isEmpty else { throw .invalidArgument("the selection keeps no structure of \(n); nothing can compensate") }
    return try DataFreeModel(group, n: n, options: options).coefficients(kept: kept, pruned: (0..<n).filter { keep[$0] == 0 })
}

/// The next-layer member of `group` (`options.next`) compensated in closed form for the `pruned`
/// channels of `n` (UDFC), float64 row-major, and the shift of each of its rows' bias. Checks
/// the members and statistics first (the errors of `dataFreeCoefficients`, `.nonFinite` for the
/// next layer's weights). `compactGroupDataFree` stores and compacts it.
func dataFreeCompensatedNext(_ group: StructureGroupView, n: Int, kept: [Int], pruned: [Int],
                             options: DataFreeCompensation) throws(PruneKitError) -> (weights: ScratchBuffer<Double>, shift: ScratchBuffer<Double>) {
    let model = try DataFreeModel(group, n: n, options: options)
    let c = try model.coefficients(kept: kept, pruned: pruned)
    let next = group.members[options.next].tensor
    let rows = next.rows, cols = next.cols, span = model.nextSpan
    let w = try ScratchBuffer<Double>(count: try checkedProduct(rows, cols, "next layer"))
    let shift = try ScratchBuffer<Double>(repeating: 0, count: rows)
    for r in 0..<rows { Double.load(next, row: r, count: cols, into: w.base + r * cols, scratch: w.base + r * cols) }
    if let bad = (0..<(rows * cols)).first(where: { !w.base[$0].isFinite }) {
        throw .nonFinite("next layer (member \(options.next)) weight at row \(bad / cols), column \(bad % cols) is \(w.base[bad])")
    }
    let pc = pruned.count, kc = kept.count
    if pc > 0 {
        // For each offset e of the span: W'[:, K e] += W'[:, P e] S^T (rows x P times P x K).
        let from = try ScratchBuffer<Double>(count: try checkedProduct(rows, pc, "pruned columns"))
        let to = try ScratchBuffer<Double>(count: try checkedProduct(rows, kc, "kept columns"))
        let st = try ScratchBuffer<Double>(count: pc * kc)
        defer { keepAlive(from, to, st) }
        for k in 0..<kc { for p in 0..<pc { st.base[p * kc + k] = c.scales[k * pc + p] } }
        for e in 0..<span {
            for r in 0..<rows {
                let row = w.base + r * cols
                for (p, j) in pruned.enumerated() {
                    from.base[r * pc + p] = row[j * span + e]
                    shift.base[r] += c.shifts[p] * row[j * span + e]
                }
            }
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(kc), Int32(pc), 1, from.base,
                        Int32(pc), st.base, Int32(kc), 0, to.base, Int32(kc))
            for r in 0..<rows {
                let row = w.base + r * cols
                for (k, j) in kept.enumerated() { row[j * span + e] += to.base[r * kc + k] }
            }
        }
    }
    return (w, shift)
}

/// The per-channel moments of the data-free model and the producer's filter cosines.
struct DataFreeModel {
    let n: Int
    let nextSpan: Int
    /// E[a_c], Var(a_c), and the factor slope_c * sign(gamma_c) * sd_c that scales the cosines.
    var mean: [Double], variance: [Double], factor: [Double]
    /// The producer's filters, normalised (zero filters stay zero), n x filterLength.
    var filters: [Double]
    let filterLength: Int
    let dampening: Double

    init(_ group: StructureGroupView, n: Int, options o: DataFreeCompensation) throws(PruneKitError) {
        let count = group.members.count
        func member(_ index: Int, _ name: String) throws(PruneKitError) -> StructureMemberView {
            guard index >= 0, index < count else {
                throw .invalidArgument("\(name) member \(index) is not a member of the group (\(count) members)")
            }
            return group.members[index]
        }
        let producer = try member(o.producer, "producer")
        guard case .rows(let rowSpan) = producer.axis else {
            throw .invalidArgument("producer member \(o.producer) is not split along its rows (the pruned channels' filters)")
        }
        let next = try member(o.next, "next")
        guard case .cols(let span) = next.axis else {
            throw .invalidArgument("next member \(o.next) is not split along its columns (the next layer's inputs)")
        }
        guard o.next != o.producer else { throw .invalidArgument("the producer and the next member are the same member") }
        guard o.epsilon.isFinite, o.epsilon >= 0 else { throw .invalidArgument("epsilon must be finite and >= 0, got \(o.epsilon)") }
        guard o.dampening.isFinite, o.dampening >= 0 else {
            throw .invalidArgument("dampening must be finite and >= 0, got \(o.dampening)")
        }
        func vector(_ index: Int, _ name: String) throws(PruneKitError) -> [Double] {
            let m = try member(index, name)
            let t = m.tensor
            guard t.rows == 1, t.cols == n, m.axis == .cols(span: 1) else {
                throw .invalidShape("\(name) member \(index) is \(t.rows) x \(t.cols); a batch-norm vector is 1 x \(n) (span 1)")
            }
            var out = [Double](repeating: 0, count: n)
            out.withUnsafeMutableBufferPointer { b in Double.load(t, row: 0, count: n, into: b.baseAddress!, scratch: b.baseAddress!) }
            if let bad = out.firstIndex(where: { !$0.isFinite }) { throw .nonFinite("\(name) at \(bad) is \(out[bad])") }
            return out
        }
        let gamma = try vector(o.batchNormWeight, "batch-norm weight")
        let beta = try vector(o.batchNormBias, "batch-norm bias")
        _ = try vector(o.batchNormMean, "batch-norm running mean")   // checked: part of the statistics
        let variance = try vector(o.batchNormVariance, "batch-norm running variance")
        if let bad = variance.firstIndex(where: { $0 < 0 }) {
            throw .invalidArgument("batch-norm running variance at \(bad) is \(variance[bad]), a variance cannot be negative")
        }
        if let bad = variance.firstIndex(where: { $0 + o.epsilon <= 0 }) {
            throw .invalidArgument("batch-norm running variance at \(bad) plus epsilon is 0: the normalisation divides by 0")
        }
        self.n = n
        nextSpan = span
        dampening = o.dampening
        let t = producer.tensor
        let length = try checkedProduct(rowSpan, t.cols, "filter")
        filterLength = length
        var filters = [Double](repeating: 0, count: try checkedProduct(n, length, "filters"))
        for c in 0..<n {
            try filters.withUnsafeMutableBufferPointer { (b) throws(PruneKitError) in
                let f = b.baseAddress! + c * length
                for r in 0..<rowSpan {
                    Double.load(t, row: c * rowSpan + r, count: t.cols, into: f + r * t.cols, scratch: f + r * t.cols)
                }
                var norm = 0.0
                for i in 0..<length {
                    guard f[i].isFinite else {
                        throw .nonFinite("producer (member \(o.producer)) weight at row \(c * rowSpan + i / t.cols), column \(i % t.cols) is \(f[i])")
                    }
                    norm += f[i] * f[i]
                }
                norm = norm.squareRoot()
                guard norm.isFinite else { throw .nonFinite("producer filter \(c) has an infinite norm") }
                for i in 0..<length { f[i] = norm > 0 ? f[i] / norm : 0 }
            }
        }
        self.filters = filters
        mean = []; self.variance = []; factor = []
        for c in 0..<n {
            let sd = abs(gamma[c]) * (variance[c] / (variance[c] + o.epsilon)).squareRoot()
            let m = beta[c], sign: Double = gamma[c] < 0 ? -1 : 1
            switch o.activation {
            case .identity:
                mean.append(m); self.variance.append(sd * sd); factor.append(sign * sd)
            case .relu:
                if sd > 0 {
                    let z = m / sd
                    let cdf = 0.5 * erfc(-z / 2.0.squareRoot()), pdf = exp(-0.5 * z * z) / (2 * Double.pi).squareRoot()
                    let first = m * cdf + sd * pdf, second = (m * m + sd * sd) * cdf + m * sd * pdf
                    mean.append(first)
                    // Var(relu(y)) >= (cdf sd)^2 (Cauchy-Schwarz on Stein's covariance): clamp round-off.
                    self.variance.append(max(second - first * first, cdf * cdf * sd * sd))
                    factor.append(sign * cdf * sd)
                } else {
                    mean.append(max(m, 0)); self.variance.append(0); factor.append(0)
                }
            }
        }
    }

    /// The model's covariance blocks: C_KK (kc x kc) and C_PK (pc x kc, row p holding the
    /// right-hand side of pruned channel p), the filter cosines by one matrix product each.
    func covariances(kept: [Int], pruned: [Int]) throws(PruneKitError) -> (g: [Double], rhs: [Double]) {
        let kc = kept.count, pc = pruned.count, length = filterLength
        let fk = try ScratchBuffer<Double>(count: try checkedProduct(kc, length, "kept filters"))
        let fp = try ScratchBuffer<Double>(count: try checkedProduct(max(pc, 1), length, "pruned filters"))
        defer { keepAlive(fk, fp) }
        filters.withUnsafeBufferPointer { f in
            for (a, c) in kept.enumerated() { (fk.base + a * length).update(from: f.baseAddress! + c * length, count: length) }
            for (a, c) in pruned.enumerated() { (fp.base + a * length).update(from: f.baseAddress! + c * length, count: length) }
        }
        var g = [Double](repeating: 0, count: kc * kc), rhs = [Double](repeating: 0, count: pc * kc)
        g.withUnsafeMutableBufferPointer { out in
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(kc), Int32(kc), Int32(length), 1, fk.base, Int32(length),
                        fk.base, Int32(length), 0, out.baseAddress!, Int32(kc))
        }
        if pc > 0 {
            rhs.withUnsafeMutableBufferPointer { out in
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(pc), Int32(kc), Int32(length), 1, fp.base, Int32(length),
                            fk.base, Int32(length), 0, out.baseAddress!, Int32(kc))
            }
        }
        for a in 0..<kc {
            for b in 0..<kc { g[a * kc + b] = a == b ? variance[kept[a]] : factor[kept[a]] * factor[kept[b]] * g[a * kc + b] }
            for p in 0..<pc { rhs[p * kc + a] *= factor[kept[a]] * factor[pruned[p]] }
        }
        // The product is symmetric up to round-off in the BLAS's blocking: make it exactly so.
        for a in 0..<kc { for b in 0..<a { g[b * kc + a] = g[a * kc + b] } }
        return (g, rhs)
    }

    func coefficients(kept: [Int], pruned: [Int]) throws(PruneKitError) -> DataFreeCoefficients {
        let kc = kept.count, pc = pruned.count
        var result = DataFreeCoefficients(kept: kept, pruned: pruned, scales: [Double](repeating: 0, count: kc * pc),
                                          shifts: pruned.map { mean[$0] })
        guard pc > 0 else { return result }
        var (g, rhs) = try covariances(kept: kept, pruned: pruned)
        var trace = 0.0
        for a in 0..<kc { trace += g[a * kc + a] }
        // All kept channels constant: nothing to combine, only the means move (s = 0).
        guard trace > 0 else { return result }
        let lambda = dampening * trace / Double(kc)
        for a in 0..<kc { g[a * kc + a] += lambda }
        var info = g.withUnsafeMutableBufferPointer { Double.choleskyUpper($0.baseAddress!, n: kc) }
        guard info == 0 else {
            throw PruneKitError(.numeric, "the kept channels' covariance is not positive definite (LAPACK info \(info)); "
                                + "raise the dampening (\(dampening))")
        }
        // rhs holds pc right-hand sides of length kc, one per row: the row-major pc x kc matrix.
        info = g.withUnsafeBufferPointer { f in
            rhs.withUnsafeMutableBufferPointer { Double.solveRight(f.baseAddress!, n: kc, b: $0.baseAddress!, rows: pc) }
        }
        guard info == 0 else { throw PruneKitError(.numeric, "solving for the coefficients failed (LAPACK info \(info))") }
        for p in 0..<pc {
            var t = mean[pruned[p]]
            for k in 0..<kc {
                let s = rhs[p * kc + k]
                guard s.isFinite else { throw PruneKitError(.numeric, "coefficient \(k), \(p) is \(s); raise the dampening") }
                result.scales[k * pc + p] = s
                t -= s * mean[kept[k]]
            }
            result.shifts[p] = t
        }
        return result
    }
}
