import Foundation
import CPruneKit
import PruneKit
@testable import PruneKitC
import Testing

/// The Swift API of pruning over time: a Pruner over views of owned memory, the decay factor,
/// state round trips, and the host loops driven by Swift closures.
@Suite("Progressive pruning")
struct ProgressiveTests {
    @Test("a cubic pruner's masks equal one-shot masks at each update point")
    func prunerMatchesOneShot() throws {
        let values: [Float] = (0..<(16 * 24)).map { (i: Int) -> Float in Float((i * 7919) % 1000) / 500 - 1 }
        var weights = [try Matrix<Float>(rows: 16, cols: 24, values: values)]
        let schedule = Schedule(kind: .cubic, begin: 0, end: 12, frequency: 4, finalSparsity: 0.75)
        var pruner = try Pruner(weights: weights, selection: .perRow(sparsity: 0), schedule: schedule)
        for t in Int64(0)...14 {
            let before = weights[0]
            try pruner.step(t, weights: &weights)
            if t % 4 == 0 && t <= 12 {
                let want = try pruningMask(for: before, criterion: .magnitude, selection: .perRow(sparsity: schedule.sparsity(at: t)))
                #expect(try pruner.mask(layer: 0) == want, "step \(t)")
            }
        }
        #expect(schedule.sparsity(at: 5) == 0.75 + (0 - 0.75) * pow(1 - 4.0 / 12, 3))
        #expect(try pruner.mask(layer: 0).values.filter { $0 == 0 }.count == 16 * 18)
        #expect((0..<values.count).allSatisfy { try! pruner.mask(layer: 0).values[$0] == 1 ? weights[0].values[$0] == values[$0] : weights[0].values[$0] == 0 })
        // The state restores into a pruner of the same configuration, not into another.
        let bytes = pruner.serialized()
        var again = try Pruner(weights: weights, selection: .perRow(sparsity: 0), schedule: schedule)
        try again.restore(from: bytes)
        #expect(try again.mask(layer: 0) == pruner.mask(layer: 0) && again.lastStep == 14)
        var other = try Pruner(weights: weights, criteria: [.random(seed: 1)], selection: .perRow(sparsity: 0), schedule: schedule)
        #expect(throws: PruneKitError.self) { try other.restore(from: bytes) }
        // Weights of another shape or dtype, or a layer out of range, are refused.
        var wider = [try Matrix<Float>(rows: 16, cols: 25, floats: Array(repeating: 1, count: 400))]
        #expect(throws: PruneKitError.self) { try again.step(15, weights: &wider) }
        var doubles = [try Matrix<Double>(rows: 16, cols: 24, floats: values)]
        #expect(throws: PruneKitError.self) { try again.step(15, weights: &doubles) }
        #expect(throws: PruneKitError.self) { try again.mask(layer: 1) }
        #expect(again.lastStep == 14)
    }

    @Test("the decay factor reaches zero after decaySteps steps")
    func decayFactor() throws {
        var weights = [try Matrix<Float>(rows: 1, cols: 4, values: [1, 2, 3, 4])]
        var pruner = try Pruner(weights: weights, selection: .perLayer(sparsity: 0),
                                schedule: Schedule(kind: .oneShot, finalSparsity: 0.25), options: PrunerOptions(decaySteps: 3))
        for (t, f) in [(Int64(0), Float(2.0 / 3)), (1, Float(1.0 / 3)), (2, 0), (3, 0)] {
            try pruner.step(t, weights: &weights)
            #expect(try pruner.factors(layer: 0).values[0] == f, "step \(t)")
            #expect(weights[0].values[0] == Float(1.0 * Double(f)))
        }
        #expect(try pruner.mask(layer: 0).values == [0, 1, 1, 1])
    }

    @Test("a Swift closure that throws ends the C-SWAP loop with the weights as before")
    func throwingClosureRestores() throws {
        var up: [Float] = (0..<32).map { (i: Int) -> Float in Float(i % 7) - 3 }
        var down: [Float] = (0..<32).map { (i: Int) -> Float in Float(i % 5) - 2 }
        let original = (up, down)
        try up.withUnsafeMutableBytes { u in
            try down.withUnsafeMutableBytes { d in
                let group = StructureGroupView(members: [
                    StructureMemberView(tensor: try MatrixView(base: u.baseAddress!, dtype: .float32, rows: 8, cols: 4, rowStride: 4),
                                        axis: .rows(span: 1)),
                    StructureMemberView(tensor: try MatrixView(base: d.baseAddress!, dtype: .float32, rows: 4, cols: 8, rowStride: 8),
                                        axis: .cols(span: 1)),
                ])
                var calls = 0
                #expect(throws: PruneKitError(.cancelled, "stop")) {
                    _ = try progressiveStructurePruning(groups: [group], scoring: StructureOptions(),
                                                        options: ProgressiveOptions(targetRatio: 0.75, stepRatio: 0.25)) { _ throws(PruneKitError) in
                        calls += 1
                        if calls == 3 { throw PruneKitError(.cancelled, "stop") }
                        return 0
                    }
                }
                #expect(calls == 3)
                #expect(Array(u.bindMemory(to: Float.self)) == original.0 && Array(d.bindMemory(to: Float.self)) == original.1)
                let result = try progressiveStructurePruning(groups: [group], scoring: StructureOptions(),
                                                             options: ProgressiveOptions(targetRatio: 0.5, stepRatio: 0.25)) { _ in 0 }
                #expect(result.stop == .reachedTarget && result.pruned == 4 && result.keep.filter { $0 == 1 }.count == 4)
            }
        }
        #expect(up != original.0)
        let (ratios, counts) = try sensitivityRatios(layerSizes: [10, 30], probes: [0.5, 1], target: 0.5) { layer, r in
            layer == 0 ? r : 10 * r
        }
        #expect(counts == [10, 10] && ratios[0] == 1)
        #expect(Int(30 * ratios[1]) == 10 && Int(30 * ratios[1].nextDown) == 9)
    }

    @Test("the owned C-SWAP loop takes the view loop's steps, reads its tensors only; applyStructures zeroes structures")
    func ownedProgressiveStructures() throws {
        var up: [Float] = (0..<32).map { (i: Int) -> Float in Float((i * 37) % 11) - 5 }
        var down: [Float] = (0..<32).map { (i: Int) -> Float in Float((i * 13) % 7) - 3 }
        // A cost that rejects the step removing structure 3 (seen through the selection alone).
        func cost(_ keep: [Bool]) -> Double { keep[3] ? Double(keep.filter { !$0 }.count) * 0.001 : 1 }
        let options = ProgressiveOptions(targetRatio: 0.75, stepRatio: 0.125, tolerance: 0.01)
        let viewResult = try up.withUnsafeMutableBytes { u in
            try down.withUnsafeMutableBytes { d in
                let group = StructureGroupView(members: [
                    StructureMemberView(tensor: try MatrixView(base: u.baseAddress!, dtype: .float32, rows: 8, cols: 4, rowStride: 4),
                                        axis: .rows(span: 1)),
                    StructureMemberView(tensor: try MatrixView(base: d.baseAddress!, dtype: .float32, rows: 4, cols: 8, rowStride: 8),
                                        axis: .cols(span: 1)),
                ])
                return try progressiveStructurePruning(groups: [group], scoring: StructureOptions(), options: options) { k in
                    cost(k.map { $0 != 0 })
                }
            }
        }
        let upMatrix = try Matrix<Float>(rows: 8, cols: 4, values: (0..<32).map { (i: Int) -> Float in Float((i * 37) % 11) - 5 })
        let downMatrix = try Matrix<Float>(rows: 4, cols: 8, values: (0..<32).map { (i: Int) -> Float in Float((i * 13) % 7) - 3 })
        let group = StructureGroup([StructureMember(upMatrix, axis: .rows(span: 1)), StructureMember(downMatrix, axis: .cols(span: 1))])
        var seen: [[Bool]] = []
        let owned = try progressiveStructurePruning([group], options: options) { keep in
            seen.append(keep[0])
            return cost(keep[0])
        }
        #expect(owned == viewResult && owned.rejected >= 1 && owned.protected[3] == 1)
        #expect(seen.count == owned.evaluations && seen[0].allSatisfy { $0 })
        // The view loop left its tensors with the pruned structures zeroed; applyStructures over
        // the owned matrices gives the same bytes.
        let keep = owned.keep.map { $0 == 1 }
        var smallerUp = upMatrix, smallerDown = downMatrix
        try applyStructures(keep, to: &smallerUp, axis: .rows(span: 1))
        try applyStructures(keep, to: &smallerDown, axis: .cols(span: 1))
        #expect(smallerUp.values == up && smallerDown.values == down && smallerUp.values != upMatrix.values)
        #expect(throws: PruneKitError.self) { try applyStructures([true], to: &smallerUp, axis: .rows(span: 1)) }
    }

    @Test("soft mode: m and dm/dw as softMask's before the end, then hardened at the exact count; state round trip")
    func softMode() throws {
        let original: [Double] = (0..<(6 * 20)).map { (i: Int) -> Double in Double((i * 7919) % 1001) / 500 - 1 }
        var weights = [try Matrix<Double>(rows: 6, cols: 20, values: original)]
        let schedule = Schedule(kind: .cubic, begin: 0, end: 6, frequency: 1, finalSparsity: 0.5)
        var pruner = try Pruner(weights: weights, selection: .perRow(sparsity: 0), schedule: schedule,
                                options: PrunerOptions(softTemperature: 0.05))
        #expect(pruner.isSoft && !pruner.isHardened)
        for t in Int64(0)...3 { try pruner.step(t, weights: &weights) }
        #expect(weights[0].values == original)
        let (m, d) = try softMask(for: weights[0], selection: .perRow(sparsity: schedule.sparsity(at: 3)), temperature: 0.05)
        let (sm, sd) = try pruner.softMask(layer: 0)
        #expect(sm.values == m.values && sd.values == d.values)
        let bytes = pruner.serialized()
        var again = try Pruner(weights: weights, selection: .perRow(sparsity: 0), schedule: schedule,
                               options: PrunerOptions(softTemperature: 0.05))
        try again.restore(from: bytes)
        #expect(try again.softMask(layer: 0).mask == sm && again.lastStep == 3)
        try pruner.step(6, weights: &weights)
        #expect(pruner.isHardened)
        let mask = try pruner.mask(layer: 0).values
        for r in 0..<6 { #expect(mask[(r * 20)..<(r * 20 + 20)].filter { $0 == 0 }.count == 10) }
        #expect(try pruner.softMask(layer: 0).mask.values == mask.map { Float($0) })
        #expect(try pruner.softMask(layer: 0).derivative.values.allSatisfy { $0 == 0 })
        let w = weights[0].values
        #expect((0..<120).allSatisfy { mask[$0] == 1 ? w[$0] == original[$0] : w[$0] == 0 })
        #expect(throws: PruneKitError.self) {
            _ = try Pruner(weights: weights, selection: .perRow(sparsity: 0), schedule: schedule,
                           options: PrunerOptions(decaySteps: 4, softTemperature: 0.05))
        }
    }
}

/// What pk_pruner_create makes of the two thread counts it is given (not observable through the
/// C API: results never depend on it).
@Suite("pk_pruner threads")
struct PrunerThreadTests {
    @Test("options->num_threads when set, else selection->num_threads")
    func threadsReachThePruner() throws {
        var w = [Float](repeating: 1, count: 32)
        for (fromSelection, fromOptions, want) in [(Int32(3), Int32(0), 3), (2, 0, 2), (3, 1, 1), (0, 0, 0)] {
            var sel = pk_selection(), schedule = pk_schedule(), options = pk_pruner_options()
            pk_selection_init(&sel)
            pk_schedule_init(&schedule)
            pk_pruner_options_init(&options)
            sel.num_threads = fromSelection
            options.num_threads = fromOptions
            var handle: OpaquePointer?
            let status = w.withUnsafeMutableBytes { raw in
                var m = pk_matrix(data: raw.baseAddress!, rows: 4, cols: 8, row_stride: 8, dtype: Int32(PK_DTYPE_FLOAT32.rawValue), reserved: 0)
                return pk_pruner_create(&m, 1, nil, &sel, &schedule, nil, &options, &handle)
            }
            #expect(status == pk_status(PK_OK.rawValue))
            let threads = try prunerBox(handle).state.withLock { $0.options.threads }
            #expect(threads == want, "selection \(fromSelection), options \(fromOptions)")
            pk_pruner_free(handle)
        }
    }
}
