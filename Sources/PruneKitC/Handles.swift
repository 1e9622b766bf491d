// Opaque handles (pk_stats, and any handle added later) as a table index plus a generation,
// never an address: a freed handle, a handle of another kind or a forged value is an error even
// when the allocator hands the freed memory to the next object.
import PruneKit
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// ThreadSanitizer cannot see Synchronization.Mutex take and release its lock (the standard
/// library is not instrumented), so in a process that runs under it, every lock of a handle's
/// table or accumulator is also announced to it (`__tsan_acquire` / `__tsan_release`, found at
/// run time: without ThreadSanitizer they are absent and this costs one check per lock).
struct ThreadSanitizerHooks: @unchecked Sendable {
    typealias Hook = @convention(c) (UnsafeMutableRawPointer?) -> Void
    let acquire: Hook?, release: Hook?

    init() {
        func hook(_ name: String) -> Hook? {
            dlsym(nil, name).map { unsafeBitCast($0, to: Hook.self) }
        }
        acquire = hook("__tsan_acquire")
        release = hook("__tsan_release")
    }
}

let threadSanitizer = ThreadSanitizerHooks()

/// Call first thing inside a lock that guards `object`'s state...
@inline(__always)
func announceLocked(_ object: AnyObject) {
    if let acquire = threadSanitizer.acquire { acquire(Unmanaged.passUnretained(object).toOpaque()) }
}

/// ... and this last (a `defer` right after `announceLocked`).
@inline(__always)
func announceUnlocking(_ object: AnyObject) {
    if let release = threadSanitizer.release { release(Unmanaged.passUnretained(object).toOpaque()) }
}

/// The handles of one kind. A handle's 64 bits are the kind's tag (8 bits), the slot's
/// generation (24 bits) and the slot index + 1 (32 bits). Freeing a handle bumps its slot's
/// generation; a slot whose generation would wrap is retired instead of reused, so no two
/// handles ever share a value in one process.
final class HandleTable<Object: AnyObject & Sendable>: Sendable {
    private struct Slot {
        var generation: UInt64
        var object: Object?
    }

    private struct Slots {
        var slots: [Slot] = []
        var free: [Int] = []
    }

    private let tag: UInt64
    private let kind: String
    private let state = Mutex(Slots())
    private static var maxGeneration: UInt64 { (1 << 24) - 1 }

    init(tag: UInt8, kind: String) {
        self.tag = UInt64(tag)
        self.kind = kind
    }

    /// A new handle for `object` (the table keeps a strong reference until `remove`).
    func insert(_ object: Object) -> OpaquePointer {
        let bits: UInt64 = state.withLock { s in
            announceLocked(self)
            defer { announceUnlocking(self) }
            let index: Int
            if let reused = s.free.popLast() {
                index = reused
                s.slots[index].object = object
            } else {
                index = s.slots.count
                s.slots.append(Slot(generation: 1, object: object))
            }
            return tag << 56 | s.slots[index].generation << 32 | UInt64(index + 1)
        }
        return OpaquePointer(bitPattern: UInt(bits))!
    }

    /// The slot index of a handle value whose tag and generation match a live object, or nil.
    private func live(_ bits: UInt64, _ s: Slots) -> Int? {
        guard bits >> 56 == tag else { return nil }
        let low = Int(bits & 0xFFFF_FFFF)
        guard low >= 1, low <= s.slots.count else { return nil }
        let slot = s.slots[low - 1]
        guard slot.object != nil, slot.generation == (bits >> 32) & Self.maxGeneration else { return nil }
        return low - 1
    }

    /// The object behind a live handle (a strong reference: a concurrent `remove` does not
    /// release it during the caller's call), or an error naming the argument.
    func lookup(_ handle: OpaquePointer, _ name: String) throws(PruneKitError) -> Object {
        let bits = UInt64(UInt(bitPattern: handle))
        let found: Object? = state.withLock { s in
            announceLocked(self)
            defer { announceUnlocking(self) }
            return live(bits, s).flatMap { s.slots[$0].object }
        }
        guard let found else {
            throw PruneKitError(.invalidArgument, "\(name) is not a live \(kind) handle (freed, or never created by this library)")
        }
        return found
    }

    /// Releases a live handle's object; a handle that is not live is ignored.
    func remove(_ handle: OpaquePointer) {
        let bits = UInt64(UInt(bitPattern: handle))
        let released: Object? = state.withLock { s in
            announceLocked(self)
            defer { announceUnlocking(self) }
            guard let index = live(bits, s) else { return nil }
            let object = s.slots[index].object
            s.slots[index].object = nil
            if s.slots[index].generation < Self.maxGeneration {
                s.slots[index].generation += 1
                s.free.append(index)
            }
            return object
        }
        // The last reference may go here, outside the lock.
        keepAlive(released)
    }
}
