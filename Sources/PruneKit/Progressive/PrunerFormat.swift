/// The serialized state of a `Pruner` (docs/pruner-format.md). Little-endian:
///
///     offset  size  field
///     0       8     magic "PKPRUNE\0"
///     8       4     format version (1)
///     12      4     flags (bit 0: decay anchors and start steps; bit 1: gradient-flow scores;
///                   bit 2: soft masks and derivatives)
///     16      8     layer count L (u64)
///     24      8     configuration digest (FNV-1a 64 of the layers' shapes and dtypes, criteria,
///                   selection, schedule, targets and options)
///     32      8     last step applied (i64, -1: none)
///     40      8     update point of the current masks (i64, -1: none)
///     48      ...   per layer of n entries: n state bytes (0 kept, 1 decaying, 2 pruned); with
///                   bit 0, n anchors (IEEE double) and n start steps (i64); with bit 1, n
///                   scores (IEEE float); with bit 2, n soft mask values then n derivatives (IEEE float)
///     end-8   8     FNV-1a 64 checksum of every preceding byte
/// The state restores only into a pruner of the same configuration (the digest).
extension Pruner {
    static let magic: [UInt8] = Array("PKPRUNE".utf8) + [0]
    static let formatVersion: UInt32 = 1
    static let headerSize = 48

    var flags: UInt32 { (decays ? 1 : 0) | (usesFlow ? 2 : 0) | (isSoft ? 4 : 0) }

    /// A digest of everything a restored state must agree with.
    var configurationDigest: UInt64 {
        var bytes: [UInt8] = []
        func put(_ v: UInt64) { appendLE(&bytes, v) }
        put(UInt64(layers.count))
        for (l, layer) in layers.enumerated() {
            put(UInt64(layer.rows)); put(UInt64(layer.cols)); put(UInt64(layer.dtype.rawValue))
            put(UInt64(criteria[l].kind))
            switch criteria[l] {
            case .random(let seed): put(seed)
            case .wanda(let v), .stade(let v): for x in v { put(UInt64(x.bitPattern)) }
            default: break
            }
            put(targets[l].bitPattern)
        }
        switch selection {
        case .perRow: put(0)
        case .perLayer: put(1)
        case .global: put(2)
        case .nm(let n, let m): put(3); put(UInt64(n)); put(UInt64(m))
        }
        put(UInt64(schedule.kind.rawValue)); put(UInt64(bitPattern: schedule.begin)); put(UInt64(bitPattern: schedule.end))
        put(UInt64(bitPattern: schedule.frequency)); put(schedule.initialSparsity.bitPattern)
        put(schedule.finalSparsity.bitPattern)
        put(UInt64(bitPattern: options.decaySteps)); put(options.gradientMomentum.bitPattern)
        if isSoft { put(options.softTemperature.bitPattern) }   // absent otherwise: hard states keep their digest
        return fnv1a64(bytes[...])
    }

    /// The exact size of `serialized()`.
    /// The C function is `pk_pruner_serialized_size`.
    package var serializedSize: Int {
        let n = layers.reduce(0) { $0 + $1.count }
        return Self.headerSize + n * (1 + (decays ? 16 : 0) + (usesFlow ? 4 : 0) + (isSoft ? 8 : 0)) + 8
    }

    /// The state (masks, schedule position, decay anchors, moving scores) as bytes.
    /// The C function is `pk_pruner_serialize`.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(serializedSize)
        out += Self.magic
        appendLE(&out, UInt64(Self.formatVersion) | UInt64(flags) << 32)
        appendLE(&out, UInt64(layers.count))
        appendLE(&out, configurationDigest)
        appendLE(&out, UInt64(bitPattern: lastStep))
        appendLE(&out, UInt64(bitPattern: lastPoint))
        for l in 0..<layers.count {
            out += states[l]
            if decays {
                for a in anchors[l] { appendLE(&out, a.bitPattern) }
                for s in since[l] { appendLE(&out, UInt64(bitPattern: s)) }
            }
            if usesFlow { for e in flow[l] { appendLE32(&out, e.bitPattern) } }
            if isSoft {
                for m in softValues[l] { appendLE32(&out, m.bitPattern) }
                for d in softDerivatives[l] { appendLE32(&out, d.bitPattern) }
            }
        }
        appendLE(&out, fnv1a64(out[...]))
        return out
    }

    /// Replaces the state with one `serialized()` wrote for a pruner of the same configuration.
    /// The weights are not touched (the host restores its own). On error nothing changes.
    /// - Throws: `.corruptData` saying what is wrong (truncated, foreign, version, checksum, another
    ///   configuration, values no pruner holds).
    /// The C function is `pk_pruner_restore`.
    package mutating func restore(from bytes: UnsafeRawBufferPointer) throws(PruneKitError) {
        func corrupt(_ why: String) -> PruneKitError { PruneKitError(.corruptData, "pruner bytes: \(why)") }
        guard bytes.count >= Self.headerSize + 8 else { throw corrupt("truncated: \(bytes.count) bytes") }
        guard bytes.prefix(8).elementsEqual(Self.magic) else { throw corrupt("not a PruneKit pruner state (bad magic)") }
        func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        func u32(_ at: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt32.self)) }
        let version = u32(8), storedFlags = u32(12)
        guard version == Self.formatVersion else {
            throw corrupt("format version \(version) is not supported (this library reads version \(Self.formatVersion))")
        }
        guard bytes.count == serializedSize else {
            throw corrupt("\(bytes.count) bytes, this pruner's state has \(serializedSize)")
        }
        guard u64(bytes.count - 8) == fnv1a64(UnsafeRawBufferPointer(rebasing: bytes[0..<(bytes.count - 8)])) else {
            throw corrupt("checksum mismatch: the bytes are corrupted")
        }
        guard storedFlags == flags, u64(16) == UInt64(layers.count), u64(24) == configurationDigest else {
            throw corrupt("written by a pruner of another configuration (layers, criteria, selection, schedule, targets or options differ)")
        }
        let step = Int64(bitPattern: u64(32)), point = Int64(bitPattern: u64(40))
        guard step >= -1, point == -1 || (point >= schedule.begin && point <= max(schedule.end, schedule.begin) && point <= step) else {
            throw corrupt("schedule position (step \(step), update point \(point)) is not one this schedule reaches")
        }
        var newStates: [[UInt8]] = [], newAnchors: [[Double]] = [], newSince: [[Int64]] = [], newFlow: [[Float]] = []
        var newSoft: [[Float]] = [], newDerivatives: [[Float]] = []
        var at = Self.headerSize
        // The next n little-endian words of a section, and the position after them.
        func words<T>(_ n: Int, _ size: Int, _ word: (UInt64) -> T) -> [T] {
            defer { at += size * n }
            return (0..<n).map { i in word(size == 8 ? u64(at + 8 * i) : UInt64(u32(at + 4 * i))) }
        }
        func floats(_ n: Int) -> [Float] { words(n, 4) { Float(bitPattern: UInt32(truncatingIfNeeded: $0)) } }
        for (l, layer) in layers.enumerated() {
            let n = layer.count
            let s = Array(bytes[at..<(at + n)])
            at += n
            if let bad = s.firstIndex(where: { $0 > 2 || ($0 == 1 && !decays) }) {
                throw corrupt("layer \(l): entry \(bad) has state \(s[bad])")
            }
            newStates.append(s)
            if decays {
                let a = words(n, 8, Double.init(bitPattern:)), t0 = words(n, 8) { Int64(bitPattern: $0) }
                for i in 0..<n where s[i] == 1 && (!a[i].isFinite || t0[i] < 0 || t0[i] > step) {
                    throw corrupt("layer \(l): decaying entry \(i) has anchor \(a[i]) and start step \(t0[i])")
                }
                newAnchors.append(a)
                newSince.append(t0)
            } else {
                newAnchors.append([])
                newSince.append([])
            }
            if usesFlow {
                let e = floats(n)
                if let bad = e.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
                    throw corrupt("layer \(l): gradient-flow score \(bad) is \(e[bad])")
                }
                newFlow.append(e)
            } else {
                newFlow.append([])
            }
            if isSoft {
                let m = floats(n), d = floats(n)
                if let bad = m.firstIndex(where: { !($0 >= 0 && $0 <= 1) }) {
                    throw corrupt("layer \(l): soft mask value \(bad) is \(m[bad])")
                }
                if let bad = d.firstIndex(where: { !$0.isFinite }) {
                    throw corrupt("layer \(l): soft mask derivative \(bad) is \(d[bad])")
                }
                newSoft.append(m)
                newDerivatives.append(d)
            } else {
                newSoft.append([])
                newDerivatives.append([])
            }
        }
        states = newStates
        anchors = newAnchors
        since = newSince
        flow = newFlow
        softValues = newSoft
        softDerivatives = newDerivatives
        lastStep = step
        lastPoint = point
    }
}

private func appendLE(_ out: inout [UInt8], _ value: UInt64) {
    for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
}

private func appendLE32(_ out: inout [UInt8], _ value: UInt32) {
    for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))) }
}
