// The version functions of prunekit.h.
import CPruneKit

/// Implements `int32_t pk_version_number(void)`.
@c @implementation
public func pk_version_number() -> Int32 { Int32(PK_VERSION_MAJOR * 10000 + PK_VERSION_MINOR * 100 + PK_VERSION_PATCH) }

/// Implements `const char *pk_version_string(void)`.
@c @implementation
public func pk_version_string() -> UnsafePointer<CChar>! { cString("0.1.0") }  // = PK_VERSION_STRING (a test checks)
