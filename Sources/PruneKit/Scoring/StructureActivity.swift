/// What the activation criteria of structured pruning rank: a statistic of the structures'
/// outputs, taken from the group's calibration statistics. The C layer and the owned Swift API
/// both come here, so the choice of statistic is written once.
extension StructureCriterion {
    /// Whether structures are ranked by their outputs' statistics (a group's activations) rather
    /// than by the entry scores of its members.
    public var ranksActivations: Bool { self == .meanAbsActivation || self == .nonzeroFraction }

    /// The per-feature activity this criterion ranks: the mean |x| for `.meanAbsActivation`,
    /// 1 - the zero fraction (1 - APoZ) for `.nonzeroFraction`; nil for the entry-score criteria.
    /// - Parameter statistics: the statistics of the structures' outputs.
    /// - Throws: `.invalidArgument` for empty statistics or ones restored without activity data.
    public func activity(from statistics: ActivationStatistics) throws(PruneKitError) -> [Double]? {
        switch self {
        case .meanAbsActivation: return try statistics.meanAbsolute()
        case .nonzeroFraction: return try statistics.zeroFraction().map { 1 - $0 }
        case .l1, .l2: return nil
        }
    }
}
