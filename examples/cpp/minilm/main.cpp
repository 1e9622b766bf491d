// C++ inference with in-process pruning: loads all-MiniLM-L6-v2's safetensors weights, runs the
// encoder with OpenBLAS on token ids prepared once (prepare_tokens.py), calibrates and prunes every
// linear layer through PruneKit's C API, and prints dense vs pruned agreement. Then pruning at
// inference time: every FFN with per-token top-k gating at 50% of its channels (pk_top_channels,
// pk_gather, a smaller GEMV per token), timed against the dense FFN on the same tokens, and
// MACPruning's seeded random channel masks (pk_random_channel_mask).
//
//   minilm_cpp MODEL.safetensors DIR   (DIR holds calibration.tokens, evaluation.tokens, reference.f32)
//
// Exits non-zero if the dense embeddings disagree with the Python reference.
#include <prunekit.h>

#include <cblas.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// ------------------------------------------------------------------------------------------
// Errors and PruneKit handles

void check(pk_status status, const char *what) {
    if (status != PK_OK) throw std::runtime_error(std::string(what) + ": " + pk_status_string(status) + ": " + pk_last_error());
}

struct StatsDeleter {
    void operator()(pk_stats *s) const { pk_stats_free(s); }
};
using Stats = std::unique_ptr<pk_stats, StatsDeleter>;

// ------------------------------------------------------------------------------------------
// safetensors: a small JSON reader for the header, the data memory-mapped

struct Json {
    enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
    double number = 0;
    std::string text;
    std::vector<Json> items;
    std::map<std::string, Json> fields;
};

struct JsonParser {
    const std::string &s;
    size_t at = 0;
    void space() { while (at < s.size() && std::isspace(static_cast<unsigned char>(s[at]))) at++; }
    char peek() { space(); if (at >= s.size()) throw std::runtime_error("header JSON ends early"); return s[at]; }
    void expect(char c) { if (peek() != c) throw std::runtime_error(std::string("header JSON: expected ") + c); at++; }
    std::string string() {
        expect('"');
        std::string out;
        while (at < s.size() && s[at] != '"') {
            if (s[at] == '\\') { at++; if (at < s.size()) out += s[at] == 'n' ? '\n' : s[at]; at++; }
            else out += s[at++];
        }
        expect('"');
        return out;
    }
    Json value() {
        Json v;
        char c = peek();
        if (c == '{') {
            v.kind = Json::Object;
            at++;
            if (peek() == '}') { at++; return v; }
            while (true) {
                std::string key = string();
                expect(':');
                v.fields[key] = value();
                if (peek() == ',') { at++; continue; }
                expect('}');
                return v;
            }
        }
        if (c == '[') {
            v.kind = Json::Array;
            at++;
            if (peek() == ']') { at++; return v; }
            while (true) {
                v.items.push_back(value());
                if (peek() == ',') { at++; continue; }
                expect(']');
                return v;
            }
        }
        if (c == '"') { v.kind = Json::String; v.text = string(); return v; }
        if (s.compare(at, 4, "true") == 0) { v.kind = Json::Bool; at += 4; return v; }
        if (s.compare(at, 5, "false") == 0) { v.kind = Json::Bool; at += 5; return v; }
        if (s.compare(at, 4, "null") == 0) { at += 4; return v; }
        size_t used = 0;
        v.kind = Json::Number;
        v.number = std::stod(s.substr(at, 32), &used);
        at += used;
        return v;
    }
};

struct SafeTensors {
    const uint8_t *base = nullptr;
    size_t size = 0, data = 0;
    std::map<std::string, std::pair<std::vector<int64_t>, const float *>> tensors;

    explicit SafeTensors(const std::string &path) {
        int fd = open(path.c_str(), O_RDONLY);
        if (fd < 0) throw std::runtime_error("cannot open " + path);
        struct stat st;
        fstat(fd, &st);
        size = static_cast<size_t>(st.st_size);
        void *map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (map == MAP_FAILED || size < 8) throw std::runtime_error("cannot map " + path);
        base = static_cast<const uint8_t *>(map);
        uint64_t n = 0;
        std::memcpy(&n, base, 8);
        if (n > size - 8) throw std::runtime_error(path + ": header runs past the end");
        std::string header(reinterpret_cast<const char *>(base + 8), n);
        JsonParser parser{header};
        Json root = parser.value();
        data = 8 + n;
        for (auto &[name, info] : root.fields) {
            if (name == "__metadata__" || info.fields["dtype"].text != "F32") continue;
            std::vector<int64_t> shape;
            int64_t count = 1;
            for (auto &d : info.fields["shape"].items) { shape.push_back(static_cast<int64_t>(d.number)); count *= shape.back(); }
            size_t begin = static_cast<size_t>(info.fields["data_offsets"].items.at(0).number);
            size_t end = static_cast<size_t>(info.fields["data_offsets"].items.at(1).number);
            if (data + end > size || end - begin != static_cast<size_t>(count) * 4) throw std::runtime_error(name + ": bad offsets");
            tensors[name] = {shape, reinterpret_cast<const float *>(base + data + begin)};
        }
    }
    ~SafeTensors() { if (base) munmap(const_cast<uint8_t *>(base), size); }
    const float *get(const std::string &name) const {
        auto it = tensors.find(name);
        if (it == tensors.end()) throw std::runtime_error("missing tensor " + name);
        return it->second.second;
    }
};

// ------------------------------------------------------------------------------------------
// Token files

struct Tokens {
    int count = 0, length = 0;
    std::vector<int32_t> ids, mask;
    explicit Tokens(const std::string &path) {
        std::ifstream f(path, std::ios::binary);
        int32_t header[2];
        if (!f.read(reinterpret_cast<char *>(header), sizeof header)) throw std::runtime_error("cannot read " + path);
        count = header[0];
        length = header[1];
        ids.resize(static_cast<size_t>(count) * length);
        mask.resize(ids.size());
        f.read(reinterpret_cast<char *>(ids.data()), static_cast<std::streamsize>(ids.size() * 4));
        f.read(reinterpret_cast<char *>(mask.data()), static_cast<std::streamsize>(mask.size() * 4));
        if (!f) throw std::runtime_error(path + " is truncated");
    }
};

// ------------------------------------------------------------------------------------------
// The encoder

constexpr int kHidden = 384, kHeads = 12, kHeadDim = 32, kLayers = 6;
const char *kLinear[] = {"attention.self.query", "attention.self.key", "attention.self.value",
                         "attention.output.dense", "intermediate.dense", "output.dense"};

using Weights = std::map<std::string, const float *>;
// capture(layer name, inputs [tokens, features] of the real tokens)
using Capture = void (*)(void *context, const std::string &name, const float *rows, int64_t count, int64_t features);

struct Encoder {
    const SafeTensors &file;
    Weights overrides;  // pruned copies of linear weights, by tensor name
    // Inference-time pruning of the FFN's 1536 channels (0 / nullptr: off).
    int gate_k = 0;                                    // per-token top-k by |activation|
    const std::vector<float> *ffn_out_t = nullptr;     // per layer: output.dense.weight^T [1536, 384]
    const std::vector<float> *importance = nullptr;    // per layer: mean |activation| of the channels
    double threshold[kLayers] = {}, drop_probability = 0;
    uint64_t seed = 0;                                 // a new seed per call: seed + layer
    const float *w(const std::string &name) const {
        auto it = overrides.find(name);
        return it != overrides.end() ? it->second : file.get(name);
    }

    static void layer_norm(float *x, int64_t tokens, const float *g, const float *b) {
        for (int64_t t = 0; t < tokens; t++) {
            float *row = x + t * kHidden;
            double mean = 0, var = 0;
            for (int j = 0; j < kHidden; j++) mean += row[j];
            mean /= kHidden;
            for (int j = 0; j < kHidden; j++) var += (row[j] - mean) * (row[j] - mean);
            float inv = static_cast<float>(1.0 / std::sqrt(var / kHidden + 1e-12));
            for (int j = 0; j < kHidden; j++) row[j] = static_cast<float>((row[j] - mean) * inv) * g[j] + b[j];
        }
    }

    // y[tokens, out] = x[tokens, in] W^T + b
    void linear(const std::string &name, const float *x, int64_t tokens, int in, int out, float *y) const {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(tokens), out, in, 1.0f, x, in,
                    w(name + ".weight"), in, 0.0f, y, out);
        const float *b = w(name + ".bias");
        for (int64_t t = 0; t < tokens; t++)
            for (int j = 0; j < out; j++) y[t * out + j] += b[j];
    }

    // The FFN's second layer with per-token gating: y_t = b + W2[:, S_t] h_t[S_t], S_t the gate_k
    // channels of largest |h_t| (pk_top_channels), W2[:, S_t] gathered from W2^T (pk_gather).
    // Buffers are made once per call; the PruneKit calls inside the token loop allocate nothing.
    void gated_linear(int layer, const std::string &name, const float *h, int64_t tokens, float *y) const {
        const int64_t k = gate_k;
        std::vector<int64_t> idx(static_cast<size_t>(tokens * k));
        std::vector<float> sub(static_cast<size_t>(k * kHidden)), selected(static_cast<size_t>(k));
        pk_matrix hm = {const_cast<float *>(h), tokens, 1536, 1536, PK_DTYPE_FLOAT32, 0};
        check(pk_top_channels(&hm, k, 1, idx.data()), "pk_top_channels");
        pk_matrix wt = {const_cast<float *>(ffn_out_t[layer].data()), 1536, kHidden, kHidden, PK_DTYPE_FLOAT32, 0};
        pk_matrix sm = {sub.data(), k, kHidden, kHidden, PK_DTYPE_FLOAT32, 0};
        const float *b = w(name + ".bias");
        // One small GEMV per token: OpenBLAS's threads cost more than they bring at this size.
        const int blas_threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
        for (int64_t t = 0; t < tokens; t++) {
            const int64_t *s = idx.data() + t * k;
            check(pk_gather(&wt, PK_AXIS_ROWS, s, k, &sm), "pk_gather");
            for (int64_t i = 0; i < k; i++) selected[i] = h[t * 1536 + s[i]];
            std::memcpy(y + t * kHidden, b, kHidden * sizeof(float));
            cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(k), kHidden, 1.0f, sub.data(), kHidden, selected.data(), 1,
                        1.0f, y + t * kHidden, 1);
        }
        openblas_set_num_threads(blas_threads);
    }

    // MACPruning: drop the channels below the layer's importance threshold with drop_probability.
    void random_mask(int layer, float *h, int64_t tokens) const {
        uint8_t mask[1536];
        check(pk_random_channel_mask(importance[layer].data(), 1536, threshold[layer], drop_probability, seed + layer, mask),
              "pk_random_channel_mask");
        for (int64_t t = 0; t < tokens; t++)
            for (int c = 0; c < 1536; c++)
                if (!mask[c]) h[t * 1536 + c] = 0;
    }

    // Embeddings of every sequence (normalised mean pooling), count x 384.
    std::vector<float> embed(const Tokens &tok, Capture capture = nullptr, void *context = nullptr) const {
        const int64_t L = tok.length, T = static_cast<int64_t>(tok.count) * L;
        std::vector<float> x(T * kHidden), q(T * kHidden), k(T * kHidden), v(T * kHidden), ctx(T * kHidden),
            tmp(T * kHidden), hidden(T * 1536), scores(L * L), kept;
        const float *word = w("embeddings.word_embeddings.weight"), *pos = w("embeddings.position_embeddings.weight"),
                    *type = w("embeddings.token_type_embeddings.weight");
        for (int64_t t = 0; t < T; t++)
            for (int j = 0; j < kHidden; j++)
                x[t * kHidden + j] = word[tok.ids[t] * kHidden + j] + pos[(t % L) * kHidden + j] + type[j];
        layer_norm(x.data(), T, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"));
        auto capture_rows = [&](const std::string &name, const float *rows, int features) {
            if (!capture) return;
            kept.clear();
            for (int64_t t = 0; t < T; t++)
                if (tok.mask[t]) kept.insert(kept.end(), rows + t * features, rows + (t + 1) * features);
            capture(context, name, kept.data(), static_cast<int64_t>(kept.size() / features), features);
        };
        for (int layer = 0; layer < kLayers; layer++) {
            std::string p = "encoder.layer." + std::to_string(layer) + ".";
            capture_rows(p + kLinear[0], x.data(), kHidden);
            linear(p + kLinear[0], x.data(), T, kHidden, kHidden, q.data());
            linear(p + kLinear[1], x.data(), T, kHidden, kHidden, k.data());
            linear(p + kLinear[2], x.data(), T, kHidden, kHidden, v.data());
            for (int s = 0; s < tok.count; s++) {
                const int64_t o = s * L * kHidden;
                for (int h = 0; h < kHeads; h++) {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(L), static_cast<int>(L), kHeadDim,
                                1.0f / std::sqrt(static_cast<float>(kHeadDim)), q.data() + o + h * kHeadDim, kHidden,
                                k.data() + o + h * kHeadDim, kHidden, 0.0f, scores.data(), static_cast<int>(L));
                    for (int64_t i = 0; i < L; i++) {
                        float *row = scores.data() + i * L, top = -1e30f;
                        for (int64_t j = 0; j < L; j++) {
                            if (!tok.mask[s * L + j]) row[j] = -1e9f;
                            top = std::max(top, row[j]);
                        }
                        float sum = 0;
                        for (int64_t j = 0; j < L; j++) sum += (row[j] = std::exp(row[j] - top));
                        for (int64_t j = 0; j < L; j++) row[j] /= sum;
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(L), kHeadDim, static_cast<int>(L), 1.0f,
                                scores.data(), static_cast<int>(L), v.data() + o + h * kHeadDim, kHidden, 0.0f,
                                ctx.data() + o + h * kHeadDim, kHidden);
                }
            }
            capture_rows(p + kLinear[3], ctx.data(), kHidden);
            linear(p + kLinear[3], ctx.data(), T, kHidden, kHidden, tmp.data());
            for (int64_t i = 0; i < T * kHidden; i++) x[i] += tmp[i];
            layer_norm(x.data(), T, w(p + "attention.output.LayerNorm.weight"), w(p + "attention.output.LayerNorm.bias"));
            capture_rows(p + kLinear[4], x.data(), kHidden);
            linear(p + kLinear[4], x.data(), T, kHidden, 1536, hidden.data());
            for (auto &h : hidden) h = 0.5f * h * (1.0f + std::erf(h / std::sqrt(2.0f)));
            if (drop_probability > 0) random_mask(layer, hidden.data(), T);
            capture_rows(p + kLinear[5], hidden.data(), 1536);
            if (gate_k) gated_linear(layer, p + kLinear[5], hidden.data(), T, tmp.data());
            else linear(p + kLinear[5], hidden.data(), T, 1536, kHidden, tmp.data());
            for (int64_t i = 0; i < T * kHidden; i++) x[i] += tmp[i];
            layer_norm(x.data(), T, w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias"));
        }
        std::vector<float> out(static_cast<size_t>(tok.count) * kHidden, 0.0f);
        for (int s = 0; s < tok.count; s++) {
            float n = 0, norm = 0;
            for (int64_t i = 0; i < L; i++) {
                if (!tok.mask[s * L + i]) continue;
                n += 1;
                for (int j = 0; j < kHidden; j++) out[s * kHidden + j] += x[(s * L + i) * kHidden + j];
            }
            for (int j = 0; j < kHidden; j++) { out[s * kHidden + j] /= n; norm += out[s * kHidden + j] * out[s * kHidden + j]; }
            for (int j = 0; j < kHidden; j++) out[s * kHidden + j] /= std::sqrt(norm);
        }
        return out;
    }
};

double mean_cosine(const std::vector<float> &a, const std::vector<float> &b, double *minimum) {
    double sum = 0;
    *minimum = 1;
    for (size_t s = 0; s < a.size() / kHidden; s++) {
        double c = 0;
        for (int j = 0; j < kHidden; j++) c += static_cast<double>(a[s * kHidden + j]) * b[s * kHidden + j];
        sum += c;
        *minimum = std::min(*minimum, c);
    }
    return sum / static_cast<double>(a.size() / kHidden);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Pruning at inference time on the evaluation tokens: per-token top-k gating of every FFN at 50%
// of its channels, and MACPruning's randomised masks. Speed: the six FFNs (both layers) on the
// real tokens' inputs, dense vs gated, best of several runs.
int inference_time_pruning(const SafeTensors &file, const Tokens &evaluation, const std::vector<float> &dense_embeddings,
                           const std::map<std::string, Stats> &stats) {
    std::vector<float> transposed[kLayers], importance[kLayers];
    Encoder gated{file, {}};
    gated.gate_k = 768;
    gated.ffn_out_t = transposed;
    for (int layer = 0; layer < kLayers; layer++) {
        std::string p = "encoder.layer." + std::to_string(layer) + ".";
        const float *w2 = file.get(p + kLinear[5] + ".weight");  // [384, 1536]
        transposed[layer].resize(1536 * kHidden);
        for (int o = 0; o < kHidden; o++)
            for (int c = 0; c < 1536; c++) transposed[layer][c * kHidden + o] = w2[o * 1536 + c];
        std::vector<double> mean_abs(1536);
        check(pk_stats_mean_abs(stats.at(p + kLinear[5]).get(), mean_abs.data(), 1536), "pk_stats_mean_abs");
        importance[layer].assign(mean_abs.begin(), mean_abs.end());
    }
    double minimum = 0, agreement = mean_cosine(gated.embed(evaluation), dense_embeddings, &minimum);
    std::printf("C++ per-token FFN gating (top 768 of 1536 channels by |activation|, every layer): embeddings vs dense "
                "mean cosine %.4f, min %.4f\n", agreement, minimum);

    // The FFNs alone on the real tokens' inputs, captured from the dense encoder.
    std::map<std::string, std::vector<float>> inputs;
    auto capture = [](void *context, const std::string &name, const float *rows, int64_t count, int64_t features) {
        if (name.find(kLinear[4]) == std::string::npos) return;
        static_cast<std::map<std::string, std::vector<float>> *>(context)->operator[](name).assign(rows, rows + count * features);
    };
    Encoder dense{file, {}};
    dense.embed(evaluation, capture, &inputs);
    const int64_t T = static_cast<int64_t>(inputs.begin()->second.size() / kHidden);
    std::vector<float> hidden(T * 1536), y_dense(T * kHidden), y_gated(T * kHidden);
    double best_dense = 1e30, best_gated = 1e30, error = 0, norm = 0;
    for (int run = 0; run < 3; run++) {
        double t_dense = 0, t_gated = 0;
        for (int layer = 0; layer < kLayers; layer++) {
            std::string p = "encoder.layer." + std::to_string(layer) + ".";
            const float *x = inputs.at(p + kLinear[4]).data();
            auto start = std::chrono::steady_clock::now();
            dense.linear(p + kLinear[4], x, T, kHidden, 1536, hidden.data());
            for (auto &h : hidden) h = 0.5f * h * (1.0f + std::erf(h / std::sqrt(2.0f)));
            dense.linear(p + kLinear[5], hidden.data(), T, 1536, kHidden, y_dense.data());
            t_dense += seconds_since(start);
            start = std::chrono::steady_clock::now();
            dense.linear(p + kLinear[4], x, T, kHidden, 1536, hidden.data());
            for (auto &h : hidden) h = 0.5f * h * (1.0f + std::erf(h / std::sqrt(2.0f)));
            gated.gated_linear(layer, p + kLinear[5], hidden.data(), T, y_gated.data());
            t_gated += seconds_since(start);
            if (run == 0)
                for (int64_t i = 0; i < T * kHidden; i++) {
                    error += (y_gated[i] - y_dense[i]) * static_cast<double>(y_gated[i] - y_dense[i]);
                    norm += y_dense[i] * static_cast<double>(y_dense[i]);
                }
        }
        best_dense = std::min(best_dense, t_dense);
        best_gated = std::min(best_gated, t_gated);
    }
    std::printf("C++ six FFNs on %lld tokens: dense %.2f ms (two GEMMs), gated %.2f ms (GEMM + top-k + per-token gather and "
                "GEMV at 50%%): %.2fx the dense time; FFN output relative error %.4f\n",
                static_cast<long long>(T), best_dense * 1e3, best_gated * 1e3, best_gated / best_dense, std::sqrt(error / norm));

    // One token at a time (a decode step): every FFN layer is a GEMV, single-threaded, on the first
    // 64 tokens of each layer. Gated: top-k, then the library's gathered sub-matrix and a GEMV of half
    // the size, or (host code, no copy) the kept rows of W2^T accumulated in place.
    const int64_t steps = std::min<int64_t>(T, 64);
    const int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    std::vector<int64_t> idx(768);
    std::vector<float> sub(768 * kHidden), selected(768), y(kHidden);
    double best[3] = {1e30, 1e30, 1e30};
    for (int run = 0; run < 3; run++) {
        double spent[3] = {0, 0, 0};
        for (int layer = 0; layer < kLayers; layer++) {
            std::string p = "encoder.layer." + std::to_string(layer) + ".";
            const float *x = inputs.at(p + kLinear[4]).data(), *w1 = file.get(p + kLinear[4] + ".weight"),
                        *w2 = file.get(p + kLinear[5] + ".weight");
            const float *wt = transposed[layer].data();
            pk_matrix wtm = {const_cast<float *>(wt), 1536, kHidden, kHidden, PK_DTYPE_FLOAT32, 0};
            pk_matrix sm = {sub.data(), 768, kHidden, kHidden, PK_DTYPE_FLOAT32, 0};
            for (int variant = 0; variant < 3; variant++) {
                auto start = std::chrono::steady_clock::now();
                for (int64_t t = 0; t < steps; t++) {
                    float *h = hidden.data();
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, 1536, kHidden, 1.0f, w1, kHidden, x + t * kHidden, 1, 0.0f, h, 1);
                    for (int c = 0; c < 1536; c++) h[c] = 0.5f * h[c] * (1.0f + std::erf(h[c] / std::sqrt(2.0f)));
                    if (variant == 0) {
                        cblas_sgemv(CblasRowMajor, CblasNoTrans, kHidden, 1536, 1.0f, w2, 1536, h, 1, 0.0f, y.data(), 1);
                        continue;
                    }
                    pk_matrix hm = {h, 1, 1536, 1536, PK_DTYPE_FLOAT32, 0};
                    check(pk_top_channels(&hm, 768, 1, idx.data()), "pk_top_channels");
                    if (variant == 1) {
                        check(pk_gather(&wtm, PK_AXIS_ROWS, idx.data(), 768, &sm), "pk_gather");
                        for (int i = 0; i < 768; i++) selected[i] = h[idx[i]];
                        cblas_sgemv(CblasRowMajor, CblasTrans, 768, kHidden, 1.0f, sub.data(), kHidden, selected.data(), 1, 0.0f,
                                    y.data(), 1);
                    } else {
                        std::fill(y.begin(), y.end(), 0.0f);
                        for (int i = 0; i < 768; i++) {
                            const float *row = wt + idx[i] * kHidden, v = h[idx[i]];
                            for (int o = 0; o < kHidden; o++) y[o] += v * row[o];
                        }
                    }
                }
                spent[variant] += seconds_since(start);
            }
        }
        for (int i = 0; i < 3; i++) best[i] = std::min(best[i], spent[i]);
    }
    openblas_set_num_threads(blas_threads);
    const double per = 1e6 / (static_cast<double>(steps) * kLayers);
    std::printf("C++ one token at a time (single-threaded GEMVs, %lld tokens x 6 FFNs): dense %.1f us per token-FFN, gated "
                "with pk_gather + GEMV %.1f us (%.2fx), gated with the kept rows read in place %.1f us (%.2fx)\n",
                static_cast<long long>(steps), best[0] * per, best[1] * per, best[1] / best[0], best[2] * per, best[2] / best[0]);

    // MACPruning: channels below the median importance dropped with probability 0.5, a new seed per call.
    Encoder randomised{file, {}};
    randomised.importance = importance;
    randomised.drop_probability = 0.5;
    int64_t dropped = 0;
    for (int layer = 0; layer < kLayers; layer++) {
        std::vector<float> sorted = importance[layer];
        std::nth_element(sorted.begin(), sorted.begin() + 768, sorted.end());
        randomised.threshold[layer] = sorted[768];
        uint8_t a[1536], b[1536], c[1536];
        check(pk_random_channel_mask(importance[layer].data(), 1536, randomised.threshold[layer], 0.5, 1000 + layer, a), "mask");
        check(pk_random_channel_mask(importance[layer].data(), 1536, randomised.threshold[layer], 0.5, 1000 + layer, b), "mask");
        check(pk_random_channel_mask(importance[layer].data(), 1536, randomised.threshold[layer], 0.5, 2000 + layer, c), "mask");
        if (std::memcmp(a, b, sizeof a) != 0 || std::memcmp(a, c, sizeof a) == 0)
            throw std::runtime_error("random channel masks are not reproducible from their seed");
        for (int i = 0; i < 1536; i++) dropped += !a[i];
    }
    randomised.seed = 1000;
    double r_minimum = 0, r_agreement = mean_cosine(randomised.embed(evaluation), dense_embeddings, &r_minimum);
    randomised.seed = 2000;
    double s_minimum = 0, s_agreement = mean_cosine(randomised.embed(evaluation), dense_embeddings, &s_minimum);
    std::printf("C++ MACPruning masks (FFN channels below the median importance dropped with p = 0.5; %.1f%% of channels "
                "dropped): embeddings vs dense mean cosine %.4f (seed 1000), %.4f (seed 2000); the same seed gives the same mask\n",
                100.0 * static_cast<double>(dropped) / (kLayers * 1536.0), r_agreement, s_agreement);
    (void)s_minimum;
    (void)r_minimum;
    return agreement > 0.9 ? 0 : 1;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s MODEL.safetensors DIR\n", argv[0]);
        return 2;
    }
    try {
        if (pk_version_number() != PK_VERSION_NUMBER) throw std::runtime_error("header and library versions differ");
        SafeTensors file(argv[1]);
        std::string dir = argv[2];
        Tokens calibration(dir + "/calibration.tokens"), evaluation(dir + "/evaluation.tokens");
        std::vector<float> reference(static_cast<size_t>(evaluation.count) * kHidden);
        std::ifstream(dir + "/reference.f32", std::ios::binary).read(reinterpret_cast<char *>(reference.data()),
                                                                      static_cast<std::streamsize>(reference.size() * 4));
        Encoder dense{file, {}};
        std::vector<float> embeddings = dense.embed(evaluation);
        double minimum = 0, agreement = mean_cosine(embeddings, reference, &minimum);
        std::printf("C++ dense encoder vs the Python reference: mean cosine %.6f, min %.6f\n", agreement, minimum);
        if (minimum < 0.9999) throw std::runtime_error("the C++ encoder does not reproduce the reference embeddings");

        // Calibrate: stream every linear layer's inputs into PruneKit accumulators.
        std::map<std::string, Stats> stats;
        auto capture = [](void *context, const std::string &name, const float *rows, int64_t count, int64_t features) {
            auto &all = *static_cast<std::map<std::string, Stats> *>(context);
            if (!all.count(name)) {
                pk_stats *s = nullptr;
                check(pk_stats_create(features, &s), "pk_stats_create");
                all[name].reset(s);
            }
            pk_matrix batch = {const_cast<float *>(rows), count, features, features, PK_DTYPE_FLOAT32, 0};
            check(pk_stats_update(all[name].get(), &batch), "pk_stats_update");
        };
        dense.embed(calibration, capture, &stats);

        // Prune every linear layer in process: Wanda, 2:4.
        std::map<std::string, std::vector<float>> pruned;
        Encoder sparse{file, {}};
        for (int layer = 0; layer < kLayers; layer++) {
            for (int i = 0; i < 6; i++) {
                std::string name = "encoder.layer." + std::to_string(layer) + "." + kLinear[i];
                std::string input = i < 3 ? "encoder.layer." + std::to_string(layer) + "." + kLinear[0] : name;
                const auto &shape = file.tensors.at(name + ".weight").first;
                int64_t rows = shape[0], cols = shape[1];
                std::vector<double> norms64(static_cast<size_t>(cols));
                check(pk_stats_l2_norm(stats.at(input).get(), norms64.data(), cols), "pk_stats_l2_norm");
                std::vector<float> norms(norms64.begin(), norms64.end());
                auto &copy = pruned[name];
                copy.assign(file.get(name + ".weight"), file.get(name + ".weight") + rows * cols);
                pk_matrix m = {copy.data(), rows, cols, cols, PK_DTYPE_FLOAT32, 0};
                pk_criterion wanda;
                check(pk_criterion_init(&wanda), "pk_criterion_init");
                wanda.kind = PK_CRITERION_WANDA;
                wanda.feature_values = norms.data();
                wanda.feature_count = cols;
                pk_selection selection;
                check(pk_selection_init(&selection), "pk_selection_init");
                selection.scope = PK_SCOPE_NM;
                std::vector<uint8_t> mask(static_cast<size_t>(rows * cols));
                check(pk_mask(&m, &wanda, &selection, mask.data()), "pk_mask");
                check(pk_apply_mask(&m, mask.data()), "pk_apply_mask");
                sparse.overrides[name + ".weight"] = copy.data();
            }
        }
        std::vector<float> pruned_embeddings = sparse.embed(evaluation);
        double pruned_minimum = 0, quality = mean_cosine(pruned_embeddings, embeddings, &pruned_minimum);
        std::printf("C++: 36 linear layers pruned in process to 2:4 with Wanda (%d calibration sequences)\n", calibration.count);
        std::printf("C++: pruned vs dense embeddings on %d sequences: mean cosine %.4f, min %.4f\n", evaluation.count,
                    quality, pruned_minimum);
        if (quality <= 0.5) return 1;
        return inference_time_pruning(file, evaluation, embeddings, stats);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "minilm_cpp: %s\n", e.what());
        return 1;
    }
}
