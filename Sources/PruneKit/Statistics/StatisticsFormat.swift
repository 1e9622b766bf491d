/// The serialized form of `ActivationStatistics` (docs/stats-format.md). Little-endian:
///
///     offset  size  field
///     0       8     magic "PKSTATS\0"
///     8       4     format version (1)
///     12      4     flags (bit 0: a Gram matrix; bit 1: |x| sums and zero counts)
///     16      8     features (u64)
///     24      8     count (u64, tokens)
///     32      8*F   mean, then 8*F M2, then 8*F sum of squares (IEEE double)
///     ...     16*F  with bit 1: sum of |x|, then the zero count per feature (IEEE double)
///     ...     8*F*F with bit 0: the Gram matrix X^T X, row-major, full
///     end-8   8     FNV-1a 64 checksum of every preceding byte
extension ActivationStatistics {
    static let magic: [UInt8] = Array("PKSTATS".utf8) + [0]
    static let formatVersion: UInt32 = 1
    static let headerSize = 32

    /// The exact size of `serialized()`.
    /// The C function is `pk_stats_serialized_size`.
    public var serializedSize: Int {
        Self.headerSize + 3 * 8 * features + (keepsActivity ? 16 * features : 0) + (keepsGram ? 8 * features * features : 0) + 8
    }

    /// The accumulator as bytes in the versioned statistics format.
    /// The C function is `pk_stats_serialize`.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(serializedSize)
        out += Self.magic
        let flags: UInt64 = (keepsGram ? 1 : 0) | (keepsActivity ? 2 : 0)
        appendLittleEndian(&out, UInt64(Self.formatVersion) | flags << 32)  // version (u32), flags (u32)
        appendLittleEndian(&out, UInt64(features))
        appendLittleEndian(&out, UInt64(count))
        // Doubles are copied as they sit in memory: the host is little-endian (checked below).
        for array in [means, m2, sumSquares, absSums, zeroCounts] { array.withUnsafeBytes { out.append(contentsOf: $0) } }
        if keepsGram, let g = try? gram() { g.withUnsafeBytes { out.append(contentsOf: $0) } }
        appendLittleEndian(&out, fnv1a64(out[...]))
        return out
    }

    /// Restores an accumulator from `serialized()` bytes.
    /// - Throws: `.corruptData` saying what is wrong: truncated, foreign, unknown version or
    ///   flags, checksum mismatch, or values no accumulator can hold.
    /// The C function is `pk_stats_deserialize`.
    package init(serialized bytes: UnsafeRawBufferPointer) throws(PruneKitError) {
        func corrupt(_ why: String) -> PruneKitError { PruneKitError(.corruptData, "statistics bytes: \(why)") }
        guard bytes.count >= Self.headerSize + 8 else {
            throw corrupt("truncated: \(bytes.count) bytes is shorter than the \(Self.headerSize + 8)-byte minimum")
        }
        guard bytes.prefix(8).elementsEqual(Self.magic) else { throw corrupt("not PruneKit statistics (bad magic)") }
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }
        func u64(_ at: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
        let version = u32(8), flags = u32(12)
        guard version == Self.formatVersion else {
            throw corrupt("format version \(version) is not supported (this library reads version \(Self.formatVersion))")
        }
        guard flags & ~3 == 0 else { throw corrupt("unknown flags 0x\(String(flags, radix: 16))") }
        let hasGram = flags & 1 != 0, hasActivity = flags & 2 != 0
        let features = u64(16), count = u64(24)
        let limit = hasGram ? Self.maxGramFeatures : Self.maxFeatures
        guard features > 0, features <= UInt64(limit) else { throw corrupt("feature count \(features) is out of range") }
        let gramBytes = hasGram ? 8 * Int(features) * Int(features) : 0
        let activityBytes = hasActivity ? 16 * Int(features) : 0
        let expected = Self.headerSize + 24 * Int(features) + activityBytes + gramBytes + 8
        guard bytes.count == expected else {
            throw corrupt(bytes.count < expected
                ? "truncated: \(bytes.count) bytes, \(features) features need \(expected)"
                : "\(bytes.count - expected) trailing bytes after \(expected)")
        }
        let stored = u64(expected - 8)
        let computed = fnv1a64(UnsafeRawBufferPointer(rebasing: bytes[0..<(expected - 8)]))
        guard stored == computed else { throw corrupt("checksum mismatch: the bytes are corrupted") }
        guard count <= UInt64(Self.maxCount) else { throw corrupt("token count \(count) is above the 2^53 an accumulator holds") }
        try self.init(features: Int(features), gram: hasGram)
        self.count = Int(count)
        let f = Int(features), n = Double(count)
        func double(_ at: Int) -> Double { Double(bitPattern: u64(at)) }
        // What a real accumulator satisfies, up to round-off: M2 and n * mean^2 at most the sum
        // of squares, sum |x| at most sqrt(n * sum of squares) (Cauchy-Schwarz), the Gram
        // diagonal equal to the sums of squares and every entry at most the geometric mean of
        // its two diagonal entries. `slack` covers squares that underflowed (2^-1074 each).
        let tolerance = 1e-6, slack = n * 0x1p-1072
        for j in 0..<f {
            means[j] = double(Self.headerSize + 8 * j)
            m2[j] = double(Self.headerSize + 8 * (f + j))
            sumSquares[j] = double(Self.headerSize + 8 * (2 * f + j))
            guard means[j].isFinite, m2[j].isFinite, sumSquares[j].isFinite, m2[j] >= 0, sumSquares[j] >= 0 else {
                throw corrupt("feature \(j) holds values no accumulator can hold")
            }
            if count == 0, means[j] != 0 || m2[j] != 0 || sumSquares[j] != 0 {
                throw corrupt("an empty accumulator with non-zero values at feature \(j)")
            }
            guard sumSquares[j] <= Self.maxSumOfSquares else {
                throw corrupt("the sum of squares of feature \(j) is \(sumSquares[j]), above the 2^1000 an accumulator holds")
            }
            let bound = sumSquares[j] + slack
            guard m2[j] <= bound * (1 + tolerance) else {
                throw corrupt("feature \(j) has M2 \(m2[j]) above its sum of squares \(sumSquares[j])")
            }
            if count > 0, !(Swift.abs(means[j]) <= (bound / n).squareRoot() * (1 + tolerance)) {
                throw corrupt("feature \(j) has a mean \(means[j]) that its sum of squares \(sumSquares[j]) over \(count) tokens cannot give")
            }
            // The sum of squares is M2 + n * mean^2 exactly (each bounded above, so no overflow);
            // accepting each part up to the whole let a merge grow M2 past the sum of squares.
            let parts = m2[j] + n * means[j] * means[j]
            guard Swift.abs(parts - sumSquares[j]) <= tolerance * sumSquares[j] + 2 * slack else {
                throw corrupt("feature \(j): M2 + count * mean^2 = \(parts) is not its sum of squares \(sumSquares[j])")
            }
        }
        if hasActivity {
            for j in 0..<f {
                absSums[j] = double(Self.headerSize + 8 * (3 * f + j))
                zeroCounts[j] = double(Self.headerSize + 8 * (4 * f + j))
                guard absSums[j].isFinite, absSums[j] >= 0, zeroCounts[j] >= 0, zeroCounts[j] <= n,
                      zeroCounts[j] == zeroCounts[j].rounded(),
                      absSums[j] <= n.squareRoot() * (sumSquares[j] + slack).squareRoot() * (1 + tolerance) else {
                    throw corrupt("feature \(j) holds |x| sums or zero counts no accumulator can hold")
                }
            }
        } else {
            absSums = []
            zeroCounts = []
        }
        if hasGram {
            let base = Self.headerSize + 24 * f + activityBytes
            var roots = [Double](repeating: 0, count: f)
            for i in 0..<f {
                let d = double(base + 8 * (i * f + i))
                guard d.isFinite, Swift.abs(d - sumSquares[i]) <= tolerance * sumSquares[i] + slack else {
                    throw corrupt("the Gram matrix's diagonal at \(i) is \(d), the sum of squares of feature \(i) is \(sumSquares[i])")
                }
                roots[i] = (d + slack).squareRoot()
            }
            for i in 0..<f {
                for j in i..<f {
                    let upper = double(base + 8 * (i * f + j)), lower = double(base + 8 * (j * f + i))
                    guard upper.bitPattern == lower.bitPattern else {
                        throw corrupt("the Gram matrix is not symmetric: (\(i), \(j)) = \(upper) but (\(j), \(i)) = \(lower)")
                    }
                    guard Swift.abs(upper) <= roots[i] * roots[j] * (1 + tolerance) else {
                        throw corrupt("the Gram matrix entry (\(i), \(j)) = \(upper) is larger than its diagonal allows")
                    }
                    gramUpper![i * f + j] = upper
                }
            }
        }
    }

    /// Restores an accumulator from bytes.
    public init(serialized bytes: [UInt8]) throws(PruneKitError) {
        let result: Result<ActivationStatistics, PruneKitError> = bytes.withUnsafeBytes { raw in
            Result { () throws(PruneKitError) in try ActivationStatistics(serialized: raw) }
        }
        self = try result.get()
    }
}

#if _endian(big)
#error("the statistics format copies little-endian doubles directly")
#endif

private func appendLittleEndian(_ out: inout [UInt8], _ value: UInt64) {
    for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
}

/// FNV-1a, 64-bit.
func fnv1a64<C: Collection>(_ bytes: C) -> UInt64 where C.Element == UInt8 {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01B3
    }
    return hash
}
