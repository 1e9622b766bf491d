// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "PruneKit",

    // MARK: - Products

    products: [
        /// The Swift API: `import PruneKit`.
        .library(name: "PruneKit", targets: ["PruneKit"]),
        /// The C ABI, `libprunekit.so`, declared by include/prunekit.h. The self-contained build
        /// (static Swift runtime, only pk_* exported, SONAME libprunekit.so.0) is made by
        /// `make lib`, which passes the linker flags SwiftPM cannot carry here.
        .library(name: "prunekit", type: .dynamic, targets: ["PruneKitC"]),
    ],

    // MARK: - Implementation targets

    targets: [
        /// OpenBLAS's CBLAS and LAPACK, as a system library (Debian: libopenblas-dev).
        /// A C shim: no Swift API of its own.
        .systemLibrary(
            name: "COpenBLAS",
            path: "Sources/COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        /// Compiler builtins (prefetch) for the core. A C shim: no Swift API.
        .target(name: "CPruneKitShims"),
        /// The C header include/prunekit.h as a Clang module, so that the Swift implementation of
        /// each `pk_` function is checked against its declaration (`@c @implementation`).
        .systemLibrary(name: "CPruneKit", path: "include"),
        /// The Swift core: views, statistics, scoring, selection, reconstruction, application.
        .target(
            name: "PruneKit",
            dependencies: ["COpenBLAS", "CPruneKitShims"],
            swiftSettings: [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
        ),
        /// The exported C functions only: argument checks, status codes and messages.
        .target(name: "PruneKitC", dependencies: ["PruneKit", "CPruneKit"], exclude: ["exports.map"]),

        // MARK: - Examples

        .executableTarget(name: "prune-example", dependencies: ["PruneKit"], path: "examples/swift"),

        // MARK: - Tests

        .testTarget(
            name: "PruneKitTests",
            dependencies: ["PruneKit", "PruneKitC", "CPruneKit"]
        ),
    ]
)
