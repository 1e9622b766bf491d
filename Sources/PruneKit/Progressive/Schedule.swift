#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How the sparsity of a progressive pruner grows with the training step. Raw values are pinned
/// to `enum pk_schedule_kind` in include/prunekit.h.
public enum ScheduleKind: Int32, Sendable, CaseIterable {
    /// The final sparsity from `begin` on.
    case oneShot = 0
    /// s = s_i + (s_f - s_i) * p.
    case linear = 1
    /// Zhu and Gupta (2017): s = s_f + (s_i - s_f) * (1 - p)^3.
    case cubic = 2
    /// The density shrinks geometrically: s = 1 - (1 - s_i)^(1 - p) * (1 - s_f)^p.
    case exponential = 3
}

/// A sparsity schedule: sparsity 0 before `begin`; from `begin` the sparsity changes only at the
/// update points begin, begin + frequency, ... and end, with p = (point - begin) / (end - begin);
/// at and after `end` it is the final sparsity. The C struct is `pk_schedule`.
public struct Schedule: Sendable, Equatable {
    public var kind: ScheduleKind
    public var begin: Int64
    public var end: Int64
    public var frequency: Int64
    public var initialSparsity: Double
    public var finalSparsity: Double

    public init(kind: ScheduleKind = .cubic, begin: Int64 = 0, end: Int64 = 1000, frequency: Int64 = 100,
                initialSparsity: Double = 0, finalSparsity: Double = 0.5) {
        self.kind = kind
        self.begin = begin
        self.end = end
        self.frequency = frequency
        self.initialSparsity = initialSparsity
        self.finalSparsity = finalSparsity
    }

    /// Checks the fields; `finals` are the per-layer final sparsities that replace `finalSparsity`.
    func validate(finals: [Double]? = nil) throws(PruneKitError) {
        guard begin >= 0 else { throw .invalidArgument("schedule begin must be >= 0, got \(begin)") }
        guard end >= begin else { throw .invalidArgument("schedule end \(end) is before begin \(begin)") }
        guard frequency >= 1 else { throw .invalidArgument("schedule frequency must be >= 1, got \(frequency)") }
        guard initialSparsity >= 0, initialSparsity <= 1 else {
            throw .invalidArgument("schedule initial_sparsity must be in [0, 1], got \(initialSparsity)")
        }
        for (i, s) in (finals ?? [finalSparsity]).enumerated() {
            let name = finals == nil ? "schedule final_sparsity" : "layer_targets[\(i)]"
            guard s >= 0, s <= 1 else { throw .invalidArgument("\(name) must be in [0, 1], got \(s)") }
            guard s >= initialSparsity || kind == .oneShot else {
                throw .invalidArgument("\(name) \(s) is below the schedule's initial_sparsity \(initialSparsity)")
            }
        }
    }

    /// Checks the fields (the C function pk_schedule_sparsity's check).
    public func check() throws(PruneKitError) { try validate() }

    /// The update point that governs step `t`: nil before `begin`, else the last of begin,
    /// begin + frequency, ... at or before t, and `end` from `end` on.
    public func updatePoint(at t: Int64) -> Int64? {
        guard t >= begin else { return nil }
        if t >= end || kind == .oneShot { return kind == .oneShot ? begin : end }
        return begin + (t - begin) / frequency * frequency
    }

    /// The scheduled sparsity at step `t` with final sparsity `final` (the schedule's own when nil).
    /// The C function is `pk_schedule_sparsity`.
    public func sparsity(at t: Int64, final: Double? = nil) -> Double {
        guard let point = updatePoint(at: t) else { return 0 }
        let sf = final ?? finalSparsity, si = initialSparsity
        if kind == .oneShot || point >= end { return sf }
        let p = Double(point - begin) / Double(end - begin)
        if p == 0 { return si }
        switch kind {
        case .oneShot: return sf
        case .linear: return si + (sf - si) * p
        case .cubic: return sf + (si - sf) * pow(1 - p, 3)
        case .exponential: return 1 - pow(1 - si, 1 - p) * pow(1 - sf, p)
        }
    }
}
