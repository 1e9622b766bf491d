// C++ host: RAII around the C API, errors as exceptions. Builds against an installed PruneKit:
//   c++ -std=c++17 prune.cpp $(pkg-config --cflags --libs prunekit) -o prune
#include <prunekit.h>

#include <cstdio>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace pk {

// Throws on any non-OK status, with the library's message.
inline void check(pk_status status) {
    if (status != PK_OK) throw std::runtime_error(std::string(pk_status_string(status)) + ": " + pk_last_error());
}

struct StatsDeleter {
    void operator()(pk_stats *s) const { pk_stats_free(s); }
};
using Stats = std::unique_ptr<pk_stats, StatsDeleter>;

inline Stats make_stats(int64_t features) {
    pk_stats *raw = nullptr;
    check(pk_stats_create(features, &raw));
    return Stats(raw);
}

inline pk_matrix view(std::vector<float> &data, int64_t rows, int64_t cols) {
    return pk_matrix{data.data(), rows, cols, cols, PK_DTYPE_FLOAT32, 0};
}

}  // namespace pk

int main() {
    if (pk_version_number() != PK_VERSION_NUMBER) {
        std::fprintf(stderr, "header %s but library %s\n", PK_VERSION_STRING, pk_version_string());
        return 1;
    }
    const int64_t rows = 256, cols = 512, tokens = 1024;
    std::mt19937 gen(7);
    std::normal_distribution<float> normal;
    std::vector<float> w(rows * cols), x(tokens * cols);
    for (auto &v : w) v = normal(gen);
    for (int64_t t = 0; t < tokens; t++)
        for (int64_t j = 0; j < cols; j++) x[t * cols + j] = normal(gen) * (1.0f + float(j % 16));

    try {
        auto stats = pk::make_stats(cols);
        pk_matrix batch = pk::view(x, tokens, cols);
        pk::check(pk_stats_update(stats.get(), &batch));
        std::vector<double> norms64(cols);
        pk::check(pk_stats_l2_norm(stats.get(), norms64.data(), cols));
        std::vector<float> norms(norms64.begin(), norms64.end());

        pk_matrix weights = pk::view(w, rows, cols);
        pk_criterion wanda;
        pk::check(pk_criterion_init(&wanda));
        wanda.kind = PK_CRITERION_WANDA;
        wanda.feature_values = norms.data();
        wanda.feature_count = cols;
        pk_selection two_four;
        pk::check(pk_selection_init(&two_four));
        two_four.scope = PK_SCOPE_NM;
        two_four.n = 2;
        two_four.m = 4;
        std::vector<uint8_t> mask(rows * cols);
        pk::check(pk_mask(&weights, &wanda, &two_four, mask.data()));
        pk::check(pk_apply_mask(&weights, mask.data()));
        double sparsity = 0;
        pk::check(pk_mask_sparsity(mask.data(), rows, cols, nullptr, &sparsity));
        std::printf("C++: pruned %lld x %lld to 2:4 with Wanda, sparsity %.3f\n", (long long)rows, (long long)cols, sparsity);

        // Errors come back as exceptions with the library's message.
        two_four.m = 3;
        pk::check(pk_mask(&weights, &wanda, &two_four, mask.data()));
    } catch (const std::exception &e) {
        std::printf("C++: caught as expected: %s\n", e.what());
        return 0;
    }
    return 1;
}
