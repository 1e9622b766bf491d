// The calibration statistics functions of prunekit.h. A pk_stats handle names a slot of
// `statsHandles` holding a box around a mutex-protected accumulator (Handles.swift): a stale,
// foreign or forged handle is an error, never someone else's accumulator.
import CPruneKit
import PruneKit
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

final class StatsBox: Sendable {
    private let state: Mutex<ActivationStatistics>
    init(_ statistics: ActivationStatistics) { state = Mutex(statistics) }

    /// A copy of the accumulator, taken under its lock.
    func copy() -> ActivationStatistics {
        state.withLock { s in
            announceLocked(self)
            defer { announceUnlocking(self) }
            return s
        }
    }

    /// Runs `change` on the accumulator under its lock.
    func change(_ change: (inout ActivationStatistics) throws(PruneKitError) -> Void) throws(PruneKitError) {
        try state.withLock { (s: inout ActivationStatistics) throws(PruneKitError) in
            announceLocked(self)
            defer { announceUnlocking(self) }
            try change(&s)
        }
    }
}

let statsHandles = HandleTable<StatsBox>(tag: 0x5B, kind: "pk_stats")

func register(_ statistics: ActivationStatistics, into out: UnsafeMutablePointer<OpaquePointer?>) {
    out.pointee = statsHandles.insert(StatsBox(statistics))
}

/// The box behind a live handle (retained for the duration of the call), or an error.
func box(_ handle: OpaquePointer?, _ name: String) throws(PruneKitError) -> StatsBox {
    guard let handle else { throw nullPointer(name) }
    return try statsHandles.lookup(handle, name)
}

func snapshot(_ handle: OpaquePointer?, _ name: String = "stats") throws(PruneKitError) -> ActivationStatistics {
    try box(handle, name).copy()
}

/// Implements `pk_status pk_stats_create(int64_t features, pk_stats **stats_out)`.
@c @implementation
public func pk_stats_create(_ features: Int64, _ statsOut: UnsafeMutablePointer<OpaquePointer?>?) -> pk_status {
    run("pk_stats_create") { () throws(PruneKitError) in
        guard let statsOut else { throw nullPointer("stats_out") }
        register(try ActivationStatistics(features: Int(features)), into: statsOut)
    }
}

/// Implements `pk_status pk_stats_create_gram(int64_t features, pk_stats **stats_out)`.
@c @implementation
public func pk_stats_create_gram(_ features: Int64, _ statsOut: UnsafeMutablePointer<OpaquePointer?>?) -> pk_status {
    run("pk_stats_create_gram") { () throws(PruneKitError) in
        guard let statsOut else { throw nullPointer("stats_out") }
        register(try ActivationStatistics(features: Int(features), gram: true), into: statsOut)
    }
}

/// Implements `pk_status pk_stats_gram(const pk_stats *, double *out, int64_t length)`.
@c @implementation
public func pk_stats_gram(_ stats: OpaquePointer?, _ out: UnsafeMutablePointer<Double>?, _ length: Int64) -> pk_status {
    run("pk_stats_gram") { () throws(PruneKitError) in
        let s = try snapshot(stats)
        guard let out else { throw nullPointer("out") }
        guard length == Int64(s.features) * Int64(s.features) else {
            throw PruneKitError(.invalidShape, "out has length \(length), the Gram matrix has \(s.features * s.features) entries")
        }
        let g = try s.gram()
        out.update(from: g, count: g.count)
    }
}

/// Implements `void pk_stats_free(pk_stats *stats)`.
@c @implementation
public func pk_stats_free(_ stats: OpaquePointer?) {
    guard let stats else { return }
    statsHandles.remove(stats)
}

/// Implements `pk_status pk_stats_update(pk_stats *stats, const pk_matrix *batch)`.
@c @implementation
public func pk_stats_update(_ stats: OpaquePointer?, _ batch: UnsafePointer<pk_matrix>?) -> pk_status {
    run("pk_stats_update") { () throws(PruneKitError) in
        let target = try box(stats, "stats")
        let view = try matrixView(batch, "batch")
        try target.change { (s: inout ActivationStatistics) throws(PruneKitError) in try s.accumulate(view) }
    }
}

/// Implements `pk_status pk_stats_update_rows(pk_stats *, const pk_matrix *batch, const int64_t *rows, int64_t count)`.
@c @implementation
public func pk_stats_update_rows(_ stats: OpaquePointer?, _ batch: UnsafePointer<pk_matrix>?,
                                 _ rows: UnsafePointer<Int64>?, _ count: Int64) -> pk_status {
    run("pk_stats_update_rows") { () throws(PruneKitError) in
        let target = try box(stats, "stats")
        let view = try matrixView(batch, "batch")
        guard count >= 0 else { throw PruneKitError(.invalidArgument, "count must be >= 0, got \(count)") }
        if count > 0 && rows == nil { throw nullPointer("rows") }
        let list = UnsafeBufferPointer(start: count > 0 ? rows : nil, count: Int(count))
        try target.change { (s: inout ActivationStatistics) throws(PruneKitError) in try s.accumulate(view, rows: list) }
    }
}

/// Implements `pk_status pk_stats_merge(pk_stats *into, const pk_stats *other)`.
@c @implementation
public func pk_stats_merge(_ into: OpaquePointer?, _ other: OpaquePointer?) -> pk_status {
    run("pk_stats_merge") { () throws(PruneKitError) in
        let target = try box(into, "into")
        let source = try snapshot(other, "other")
        try target.change { (s: inout ActivationStatistics) throws(PruneKitError) in try s.merge(source) }
    }
}

/// Implements `pk_status pk_stats_features(const pk_stats *, int64_t *features_out)`.
@c @implementation
public func pk_stats_features(_ stats: OpaquePointer?, _ featuresOut: UnsafeMutablePointer<Int64>?) -> pk_status {
    run("pk_stats_features") { () throws(PruneKitError) in
        let s = try snapshot(stats)
        guard let featuresOut else { throw nullPointer("features_out") }
        featuresOut.pointee = Int64(s.features)
    }
}

/// Implements `pk_status pk_stats_count(const pk_stats *, int64_t *count_out)`.
@c @implementation
public func pk_stats_count(_ stats: OpaquePointer?, _ countOut: UnsafeMutablePointer<Int64>?) -> pk_status {
    run("pk_stats_count") { () throws(PruneKitError) in
        let s = try snapshot(stats)
        guard let countOut else { throw nullPointer("count_out") }
        countOut.pointee = Int64(s.count)
    }
}

/// Writes one per-feature result after checking the output length.
func writeFeatures(_ function: StaticString, _ stats: OpaquePointer?, _ out: UnsafeMutablePointer<Double>?, _ length: Int64,
                   _ compute: (ActivationStatistics) throws(PruneKitError) -> [Double]) -> pk_status {
    run(function) { () throws(PruneKitError) in
        let s = try snapshot(stats)
        guard let out else { throw nullPointer("out") }
        guard length == Int64(s.features) else {
            throw PruneKitError(.invalidShape, "out has length \(length), the statistics have \(s.features) features")
        }
        let values = try compute(s)
        out.update(from: values, count: values.count)
    }
}

/// Implements `pk_status pk_stats_l2_norm(const pk_stats *, double *out, int64_t length)`.
@c @implementation
public func pk_stats_l2_norm(_ stats: OpaquePointer?, _ out: UnsafeMutablePointer<Double>?, _ length: Int64) -> pk_status {
    writeFeatures("pk_stats_l2_norm", stats, out, length) { $0.l2Norm() }
}

/// Implements `pk_status pk_stats_mean(const pk_stats *, double *out, int64_t length)`.
@c @implementation
public func pk_stats_mean(_ stats: OpaquePointer?, _ out: UnsafeMutablePointer<Double>?, _ length: Int64) -> pk_status {
    writeFeatures("pk_stats_mean", stats, out, length) { s throws(PruneKitError) in try s.mean() }
}

/// Implements `pk_status pk_stats_mean_abs(const pk_stats *, double *out, int64_t length)`.
@c @implementation
public func pk_stats_mean_abs(_ stats: OpaquePointer?, _ out: UnsafeMutablePointer<Double>?, _ length: Int64) -> pk_status {
    writeFeatures("pk_stats_mean_abs", stats, out, length) { s throws(PruneKitError) in try s.meanAbsolute() }
}

/// Implements `pk_status pk_stats_zero_fraction(const pk_stats *, double *out, int64_t length)`.
@c @implementation
public func pk_stats_zero_fraction(_ stats: OpaquePointer?, _ out: UnsafeMutablePointer<Double>?, _ length: Int64) -> pk_status {
    writeFeatures("pk_stats_zero_fraction", stats, out, length) { s throws(PruneKitError) in try s.zeroFraction() }
}

/// Implements `pk_status pk_stats_variance(const pk_stats *, double *out, int64_t length)`.
@c @implementation
public func pk_stats_variance(_ stats: OpaquePointer?, _ out: UnsafeMutablePointer<Double>?, _ length: Int64) -> pk_status {
    writeFeatures("pk_stats_variance", stats, out, length) { s throws(PruneKitError) in try s.variance() }
}

/// Implements `pk_status pk_stats_std(const pk_stats *, double *out, int64_t length)`.
@c @implementation
public func pk_stats_std(_ stats: OpaquePointer?, _ out: UnsafeMutablePointer<Double>?, _ length: Int64) -> pk_status {
    writeFeatures("pk_stats_std", stats, out, length) { s throws(PruneKitError) in try s.standardDeviation() }
}

/// Implements `pk_status pk_stats_serialized_size(const pk_stats *, size_t *size_out)`.
@c @implementation
public func pk_stats_serialized_size(_ stats: OpaquePointer?, _ sizeOut: UnsafeMutablePointer<Int>?) -> pk_status {
    run("pk_stats_serialized_size") { () throws(PruneKitError) in
        let s = try snapshot(stats)
        guard let sizeOut else { throw nullPointer("size_out") }
        sizeOut.pointee = s.serializedSize
    }
}

/// Implements `pk_status pk_stats_serialize(const pk_stats *, void *buffer, size_t capacity,
/// size_t *written_out)`.
@c @implementation
public func pk_stats_serialize(_ stats: OpaquePointer?, _ buffer: UnsafeMutableRawPointer?, _ capacity: Int,
                               _ writtenOut: UnsafeMutablePointer<Int>?) -> pk_status {
    run("pk_stats_serialize") { () throws(PruneKitError) in
        let s = try snapshot(stats)
        guard let buffer else { throw nullPointer("buffer") }
        guard let writtenOut else { throw nullPointer("written_out") }
        guard capacity >= s.serializedSize else {
            throw PruneKitError(.bufferTooSmall, "capacity \(capacity) is smaller than the \(s.serializedSize) bytes needed")
        }
        let bytes = s.serialized()
        bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        writtenOut.pointee = bytes.count
    }
}

/// Implements `pk_status pk_stats_deserialize(const void *buffer, size_t size, pk_stats **stats_out)`.
@c @implementation
public func pk_stats_deserialize(_ buffer: UnsafeRawPointer?, _ size: Int,
                                 _ statsOut: UnsafeMutablePointer<OpaquePointer?>?) -> pk_status {
    run("pk_stats_deserialize") { () throws(PruneKitError) in
        guard let buffer else { throw nullPointer("buffer") }
        guard let statsOut else { throw nullPointer("stats_out") }
        let s = try ActivationStatistics(serialized: UnsafeRawBufferPointer(start: buffer, count: size))
        register(s, into: statsOut)
    }
}
