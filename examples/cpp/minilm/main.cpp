// C++ inference with in-process pruning: loads all-MiniLM-L6-v2's safetensors weights, runs the
// encoder with OpenBLAS on token ids prepared once (prepare_tokens.py), calibrates and prunes every
// linear layer through PruneKit's C API, and prints dense vs pruned agreement.
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
            capture_rows(p + kLinear[5], hidden.data(), 1536);
            linear(p + kLinear[5], hidden.data(), T, 1536, kHidden, tmp.data());
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
        return quality > 0.5 ? 0 : 1;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "minilm_cpp: %s\n", e.what());
        return 1;
    }
}
