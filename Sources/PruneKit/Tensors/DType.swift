/// Element types of weight, gradient and activation buffers. Raw values are pinned to
/// `enum pk_dtype` in include/prunekit.h.
public enum DType: Int32, Sendable, CaseIterable {
    case float32 = 0
    case float64 = 1
    case float16 = 2
    /// bfloat16: the upper 16 bits of a float32.
    case bfloat16 = 3

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .float32: 4
        case .float64: 8
        case .float16, .bfloat16: 2
        }
    }

    public var name: String {
        switch self {
        case .float32: "float32"
        case .float64: "float64"
        case .float16: "float16"
        case .bfloat16: "bfloat16"
        }
    }
}

/// A bfloat16 value (the upper half of a float32's bits). Conversion from Float rounds to
/// nearest even, as PyTorch and ml_dtypes do.
public struct BFloat16: Sendable, Equatable, Hashable {
    public var bitPattern: UInt16

    public init(bitPattern: UInt16) { self.bitPattern = bitPattern }

    public init(_ value: Float) {
        let bits = value.bitPattern
        if value.isNaN {
            bitPattern = UInt16(truncatingIfNeeded: bits >> 16) | 0x0040
        } else {
            let roundingBias = 0x7FFF &+ ((bits >> 16) & 1)
            bitPattern = UInt16(truncatingIfNeeded: (bits &+ roundingBias) >> 16)
        }
    }

    public var floatValue: Float { Float(bitPattern: UInt32(bitPattern) << 16) }
}

/// Element types a `Matrix` can hold.
public protocol PruneKitScalar: Sendable {
    static var dtype: DType { get }
    init(_ value: Float)
    var floatValue: Float { get }
}

extension Float: PruneKitScalar {
    public static var dtype: DType { .float32 }
    public var floatValue: Float { self }
}

extension Double: PruneKitScalar {
    public static var dtype: DType { .float64 }
    public var floatValue: Float { Float(self) }
}

extension Float16: PruneKitScalar {
    public static var dtype: DType { .float16 }
    public var floatValue: Float { Float(self) }
}

extension BFloat16: PruneKitScalar {
    public static var dtype: DType { .bfloat16 }
}
