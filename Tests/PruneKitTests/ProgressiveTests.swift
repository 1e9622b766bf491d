import Foundation
import PruneKit
import Testing

/// The Swift API of pruning over time: a Pruner over views of owned memory, the decay factor,
/// state round trips, and the host loops driven by Swift closures.
@Suite("Progressive pruning")
struct ProgressiveTests {
    @Test("a cubic pruner's masks equal one-shot masks at each update point")
    func prunerMatchesOneShot() throws {
        var values: [Float] = (0..<(16 * 24)).map { (i: Int) -> Float in Float((i * 7919) % 1000) / 500 - 1 }
        let schedule = Schedule(kind: .cubic, begin: 0, end: 12, frequency: 4, finalSparsity: 0.75)
        try values.withUnsafeMutableBytes { raw in
            let view = try MatrixView(base: raw.baseAddress!, dtype: .float32, rows: 16, cols: 24, rowStride: 24)
            var pruner = try Pruner(layers: [view], criteria: [.magnitude], selection: .perRow(sparsity: 0), schedule: schedule)
            for t in Int64(0)...14 {
                let before = try Matrix<Float>(rows: 16, cols: 24, values: Array(raw.bindMemory(to: Float.self)))
                try pruner.step(t)
                if t % 4 == 0 && t <= 12 {
                    let want = try pruningMask(for: before, criterion: .magnitude,
                                               selection: .perRow(sparsity: schedule.sparsity(at: t)))
                    #expect(pruner.mask(layer: 0) == want.values, "step \(t)")
                }
            }
            #expect(schedule.sparsity(at: 5) == 0.75 + (0 - 0.75) * pow(1 - 4.0 / 12, 3))
            #expect(pruner.mask(layer: 0).filter { $0 == 0 }.count == 16 * 18)
            // The state restores into a pruner of the same configuration, not into another.
            let bytes = pruner.serialized()
            var again = try Pruner(layers: [view], criteria: [.magnitude], selection: .perRow(sparsity: 0), schedule: schedule)
            try bytes.withUnsafeBytes { b in try again.restore(from: b) }
            #expect(again.mask(layer: 0) == pruner.mask(layer: 0) && again.lastStep == 14)
            var other = try Pruner(layers: [view], criteria: [.random(seed: 1)], selection: .perRow(sparsity: 0), schedule: schedule)
            #expect(throws: PruneKitError.self) { try bytes.withUnsafeBytes { b in try other.restore(from: b) } }
        }
    }

    @Test("the decay factor reaches zero after decaySteps steps")
    func decayFactor() throws {
        var values: [Float] = [1, 2, 3, 4]
        try values.withUnsafeMutableBytes { raw in
            let view = try MatrixView(base: raw.baseAddress!, dtype: .float32, rows: 1, cols: 4, rowStride: 4)
            var pruner = try Pruner(layers: [view], criteria: [.magnitude], selection: .perLayer(sparsity: 0),
                                    schedule: Schedule(kind: .oneShot, finalSparsity: 0.25), options: PrunerOptions(decaySteps: 3))
            for (t, f) in [(Int64(0), Float(2.0 / 3)), (1, Float(1.0 / 3)), (2, 0), (3, 0)] {
                try pruner.step(t)
                #expect(pruner.factors(layer: 0)[0] == f, "step \(t)")
                #expect(raw.bindMemory(to: Float.self)[0] == Float(1.0 * Double(f)))
            }
            #expect(pruner.mask(layer: 0) == [0, 1, 1, 1])
        }
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

    @Test("soft mode: m and dm/dw as softMask's before the end, then hardened at the exact count; state round trip")
    func softMode() throws {
        var values: [Double] = (0..<(6 * 20)).map { (i: Int) -> Double in Double((i * 7919) % 1001) / 500 - 1 }
        let original = values
        let schedule = Schedule(kind: .cubic, begin: 0, end: 6, frequency: 1, finalSparsity: 0.5)
        try values.withUnsafeMutableBytes { raw in
            let view = try MatrixView(base: raw.baseAddress!, dtype: .float64, rows: 6, cols: 20, rowStride: 20)
            var pruner = try Pruner(layers: [view], criteria: [.magnitude], selection: .perRow(sparsity: 0), schedule: schedule,
                                    options: PrunerOptions(softTemperature: 0.05))
            #expect(pruner.isSoft && !pruner.isHardened)
            for t in Int64(0)...3 { try pruner.step(t) }
            #expect(Array(raw.bindMemory(to: Double.self)) == original)
            var m = [Float](repeating: 0, count: 120), d = [Float](repeating: 0, count: 120)
            try softMask(weights: view, selection: .perRow(sparsity: schedule.sparsity(at: 3)), temperature: 0.05,
                         into: &m, derivative: &d)
            let (sm, sd) = pruner.softMask(layer: 0)
            #expect(sm == m && sd == d)
            let bytes = pruner.serialized()
            var again = try Pruner(layers: [view], criteria: [.magnitude], selection: .perRow(sparsity: 0), schedule: schedule,
                                   options: PrunerOptions(softTemperature: 0.05))
            try bytes.withUnsafeBytes { b in try again.restore(from: b) }
            #expect(again.softMask(layer: 0).mask == sm && again.lastStep == 3)
            try pruner.step(6)
            #expect(pruner.isHardened)
            let mask = pruner.mask(layer: 0)
            for r in 0..<6 { #expect(mask[(r * 20)..<(r * 20 + 20)].filter { $0 == 0 }.count == 10) }
            #expect(pruner.softMask(layer: 0).mask == mask.map { Float($0) } && pruner.softMask(layer: 0).derivative.allSatisfy { $0 == 0 })
            let w = Array(raw.bindMemory(to: Double.self))
            #expect((0..<120).allSatisfy { mask[$0] == 1 ? w[$0] == original[$0] : w[$0] == 0 })
            #expect(throws: PruneKitError.self) {
                _ = try Pruner(layers: [view], criteria: [.magnitude], selection: .perRow(sparsity: 0), schedule: schedule,
                               options: PrunerOptions(decaySteps: 4, softTemperature: 0.05))
            }
        }
    }
}
