// The version functions of prunekit.h.
import CPruneKit
#if canImport(Glibc)
import Glibc
#endif

/// Implements `int32_t pk_version_number(void)`.
@c @implementation
public func pk_version_number() -> Int32 { Int32(PK_VERSION_MAJOR * 10000 + PK_VERSION_MINOR * 100 + PK_VERSION_PATCH) }

/// Implements `const char *pk_version_string(void)`.
@c @implementation
public func pk_version_string() -> UnsafePointer<CChar>! { versionString }

/// PK_VERSION_STRING from the header (the version is written once, there), copied once into
/// memory that lives as long as the process.
private nonisolated(unsafe) let versionString: UnsafePointer<CChar> = UnsafePointer(strdup(PK_VERSION_STRING)!)
