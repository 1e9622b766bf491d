/// Sparse formats consumers load, exported from (and imported back to) dense pruned weights.
/// Values keep the weights' dtype. An entry counts as present when it is non-zero (+0.0 and -0.0
/// are zeros). Layouts (docs/sparse-formats.md):
///
/// - 2:4 compressed: `values` rows x cols/2 (row-major; group g's two kept values at 2g, 2g+1,
///   in column order) and `metadata` rows x ceil(cols/8) bytes: group g's nibble (bits 0-1 the
///   first kept position 0...3, bits 2-3 the second, first < second) sits in byte g/2, low
///   nibble for even g (an unused last high nibble is 0). A group with fewer than 2 non-zeros
///   keeps zeros at its lowest free positions.
/// - CSR: `rowOffsets` rows + 1 (int64), `columns` nnz (int64, increasing within a row), `values` nnz.
/// - Bit mask: `bits` rows x ceil(cols/8) bytes (bit j % 8 of byte j / 8 of a row = entry j is
///   present) and `values` nnz in row-major order.
public enum SparseFormats {
    /// Non-zero entries of a matrix; non-finite values are an error.
    package static func countNonZero(_ weights: MatrixView) throws(PruneKitError) -> Int {
        try checkFinite(weights)
        var nnz = 0
        forEachRow(weights) { _, bits in
            for j in 0..<weights.cols where !isZero(bits(j)) { nnz += 1 }
        }
        return nnz
    }

    // MARK: 2:4

    /// Compresses a 2:4-sparse matrix. Throws (writing nothing) if cols % 4 != 0 or any group
    /// of 4 holds more than 2 non-zeros (the message names the first).
    package static func export24(_ weights: MatrixView, values: UnsafeMutableRawPointer, metadata: UnsafeMutablePointer<UInt8>) throws(PruneKitError) {
        guard weights.cols % 4 == 0 else {
            throw .invalidShape("2:4 compression needs cols divisible by 4, got \(weights.cols)")
        }
        try checkFinite(weights)
        var firstBad: (Int, Int)?
        forEachRow(weights) { r, bits in
            guard firstBad == nil else { return }
            for g in 0..<(weights.cols / 4) {
                var n = 0
                for i in 0..<4 where !isZero(bits(4 * g + i)) { n += 1 }
                if n > 2 { firstBad = (r, g); return }
            }
        }
        if let (r, g) = firstBad {
            throw .invalidArgument("not 2:4: row \(r), columns \(4 * g)...\(4 * g + 3) hold more than 2 non-zeros")
        }
        let size = weights.dtype.size, half = weights.cols / 2
        forEachRow(weights) { r, bits in
            let rowAddress = weights.rowAddress(r)
            for g in 0..<(weights.cols / 4) {
                var picked: [Int] = []
                for i in 0..<4 where !isZero(bits(4 * g + i)) { picked.append(i) }
                for i in 0..<4 where picked.count < 2 && !picked.contains(i) { picked.append(i) }
                picked.sort()
                for (slot, i) in picked.enumerated() {
                    (values + (r * half + 2 * g + slot) * size).copyMemory(from: rowAddress + (4 * g + i) * size, byteCount: size)
                }
                let nibble = UInt8(picked[0] | picked[1] << 2)
                let byte = metadata + r * metadataBytes(cols: weights.cols) + g / 2
                if g % 2 == 0 { byte.pointee = 0 }
                byte.pointee = g % 2 == 0 ? (byte.pointee & 0xF0) | nibble : (byte.pointee & 0x0F) | nibble << 4
            }
        }
    }

    /// Expands 2:4 compressed values and metadata into `dense` (rows x cols of the values' dtype).
    package static func import24(values: UnsafeRawPointer, metadata: UnsafePointer<UInt8>, into dense: MatrixView) throws(PruneKitError) {
        guard dense.cols % 4 == 0 else { throw .invalidShape("2:4 needs cols divisible by 4, got \(dense.cols)") }
        let bytesPerRow = metadataBytes(cols: dense.cols), groups = dense.cols / 4
        for r in 0..<dense.rows {
            for g in 0..<groups {
                let nibble = (metadata[r * bytesPerRow + g / 2] >> (g % 2 == 0 ? 0 : 4)) & 0xF
                guard nibble & 3 < nibble >> 2 else {
                    throw .corruptData("2:4 metadata of row \(r), group \(g) is \(nibble): positions must increase")
                }
            }
            if groups % 2 == 1, metadata[r * bytesPerRow + bytesPerRow - 1] >> 4 != 0 {
                throw .corruptData("2:4 metadata of row \(r) sets the unused last nibble")
            }
        }
        let size = dense.dtype.size, half = dense.cols / 2
        for r in 0..<dense.rows {
            let rowAddress = dense.rowAddress(r)
            rowAddress.initializeMemory(as: UInt8.self, repeating: 0, count: dense.cols * size)
            for g in 0..<(dense.cols / 4) {
                let nibble = Int((metadata[r * bytesPerRow + g / 2] >> (g % 2 == 0 ? 0 : 4)) & 0xF)
                for (slot, i) in [nibble & 3, nibble >> 2].enumerated() {
                    (rowAddress + (4 * g + i) * size).copyMemory(from: values + (r * half + 2 * g + slot) * size, byteCount: size)
                }
            }
        }
    }

    // MARK: CSR and bit mask

    /// CSR of the non-zeros; `capacity` is the room in `columns` and `values`.
    package static func exportCSR(_ weights: MatrixView, capacity: Int, rowOffsets: UnsafeMutablePointer<Int64>,
                                 columns: UnsafeMutablePointer<Int64>, values: UnsafeMutableRawPointer) throws(PruneKitError) {
        let nnz = try countNonZero(weights)
        guard capacity >= nnz else { throw .init(.bufferTooSmall, "capacity \(capacity) is smaller than the \(nnz) non-zeros") }
        let size = weights.dtype.size
        var n = 0
        rowOffsets[0] = 0
        forEachRow(weights) { r, bits in
            for j in 0..<weights.cols where !isZero(bits(j)) {
                columns[n] = Int64(j)
                (values + n * size).copyMemory(from: weights.rowAddress(r) + j * size, byteCount: size)
                n += 1
            }
            rowOffsets[r + 1] = Int64(n)
        }
    }

    /// Dense from CSR; the structure is checked (offsets non-decreasing from 0, columns in range
    /// and increasing within a row) before `dense` is written.
    package static func importCSR(rowOffsets: UnsafePointer<Int64>, columns: UnsafePointer<Int64>, values: UnsafeRawPointer,
                                 into dense: MatrixView) throws(PruneKitError) {
        guard rowOffsets[0] == 0 else { throw .corruptData("CSR row offsets must start at 0, got \(rowOffsets[0])") }
        // Every offset first: columns holds row_offsets[rows] entries, so no column is read until
        // the offsets are known to stay within that count (a middle offset above the last one
        // would otherwise read past the caller's buffer before the decrease is seen).
        for r in 0..<dense.rows where rowOffsets[r + 1] < rowOffsets[r] {
            throw .corruptData("CSR row offsets decrease at row \(r)")
        }
        for r in 0..<dense.rows {
            let (a, b) = (rowOffsets[r], rowOffsets[r + 1])
            for p in a..<b {
                let c = columns[Int(p)]
                guard c >= 0, c < dense.cols else { throw .corruptData("CSR column \(c) of row \(r) is out of range") }
                if p > a, columns[Int(p - 1)] >= c { throw .corruptData("CSR columns of row \(r) do not increase") }
            }
        }
        let size = dense.dtype.size
        for r in 0..<dense.rows {
            let rowAddress = dense.rowAddress(r)
            rowAddress.initializeMemory(as: UInt8.self, repeating: 0, count: dense.cols * size)
            for p in Int(rowOffsets[r])..<Int(rowOffsets[r + 1]) {
                (rowAddress + Int(columns[p]) * size).copyMemory(from: values + p * size, byteCount: size)
            }
        }
    }

    /// Bit mask of the non-zeros plus their values in row-major order.
    package static func exportBitmask(_ weights: MatrixView, capacity: Int, bits: UnsafeMutablePointer<UInt8>,
                                     values: UnsafeMutableRawPointer) throws(PruneKitError) {
        let nnz = try countNonZero(weights)
        guard capacity >= nnz else { throw .init(.bufferTooSmall, "capacity \(capacity) is smaller than the \(nnz) non-zeros") }
        let size = weights.dtype.size, bytesPerRow = (weights.cols + 7) / 8
        var n = 0
        forEachRow(weights) { r, element in
            let rowBits = bits + r * bytesPerRow
            rowBits.initialize(repeating: 0, count: bytesPerRow)
            for j in 0..<weights.cols where !isZero(element(j)) {
                rowBits[j / 8] |= 1 << UInt8(j % 8)
                (values + n * size).copyMemory(from: weights.rowAddress(r) + j * size, byteCount: size)
                n += 1
            }
        }
    }

    /// Dense from a bit mask and its values.
    package static func importBitmask(bits: UnsafePointer<UInt8>, values: UnsafeRawPointer, into dense: MatrixView) throws(PruneKitError) {
        let size = dense.dtype.size, bytesPerRow = (dense.cols + 7) / 8
        if dense.cols % 8 != 0 {
            for r in 0..<dense.rows where bits[r * bytesPerRow + bytesPerRow - 1] >> UInt8(dense.cols % 8) != 0 {
                throw .corruptData("bit mask row \(r) has bits set past column \(dense.cols - 1)")
            }
        }
        var n = 0
        for r in 0..<dense.rows {
            let rowAddress = dense.rowAddress(r)
            rowAddress.initializeMemory(as: UInt8.self, repeating: 0, count: dense.cols * size)
            for j in 0..<dense.cols where bits[r * bytesPerRow + j / 8] >> UInt8(j % 8) & 1 != 0 {
                (rowAddress + j * size).copyMemory(from: values + n * size, byteCount: size)
                n += 1
            }
        }
    }

    // MARK: helpers

    /// Metadata bytes per row of the 2:4 form: one nibble per group of 4 columns.
    public static func metadataBytes(cols: Int) -> Int { (cols / 4 + 1) / 2 }

    /// Calls body(row, bitsOfColumn) for every row; bitsOfColumn(j) returns the element's bits
    /// widened to UInt64 (sign bit at the element's own top bit).
    private static func forEachRow(_ m: MatrixView, _ body: (Int, (Int) -> UInt64) -> Void) {
        for r in 0..<m.rows {
            let address = m.rowAddress(r)
            switch m.dtype.size {
            case 8:
                let p = address.assumingMemoryBound(to: UInt64.self)
                body(r) { p[$0] << 0 }
            case 4:
                let p = address.assumingMemoryBound(to: UInt32.self)
                body(r) { UInt64(p[$0]) << 32 }
            default:
                let p = address.assumingMemoryBound(to: UInt16.self)
                body(r) { UInt64(p[$0]) << 48 }
            }
        }
    }

    /// +0.0 or -0.0 (bits left-aligned in 64).
    @inline(__always)
    private static func isZero(_ alignedBits: UInt64) -> Bool { alignedBits << 1 == 0 }

    private static func checkFinite(_ m: MatrixView) throws(PruneKitError) {
        let scratch = try ScratchBuffer<Double>(count: m.cols)
        defer { keepAlive(scratch) }
        for r in 0..<m.rows {
            let row = m.doubles(row: r, count: m.cols, scratch: scratch.base)
            for c in 0..<m.cols where !row[c].isFinite {
                throw .nonFinite("weight at row \(r), column \(c) is \(row[c])")
            }
        }
    }
}
