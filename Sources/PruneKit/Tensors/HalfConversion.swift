/// Exact IEEE binary16 -> binary32 conversion by bit arithmetic (branch-free, so loops over rows
/// vectorize; the compiler's own conversion is a library call per element on baseline x86-64).
@inline(__always)
func floatFromHalfBits(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let magnitude = UInt32(h & 0x7FFF)
    let exponent = magnitude & 0x7C00
    // Normal numbers: rebias the exponent (15 -> 127).
    let normal = (magnitude << 13) &+ ((127 - 15) << 23)
    // Inf and NaN: exponent all ones, mantissa kept.
    let special = (magnitude << 13) | 0x7F80_0000
    // Subnormals (and zero): value = mantissa * 2^-24, exact in float32.
    let subnormal = (Float(magnitude) * Float(bitPattern: 0x3380_0000)).bitPattern  // 2^-24
    let bits = exponent == 0x7C00 ? special : (exponent == 0 ? subnormal : normal)
    return Float(bitPattern: bits | sign)
}

@inline(__always)
func floatFromBFloat16Bits(_ b: UInt16) -> Float {
    Float(bitPattern: UInt32(b) << 16)
}
