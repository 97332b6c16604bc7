// Verilator driver for the fpxint_array top (fpxint_hw/flow/verilator.py builds and runs it).
//
// Reads a vector file of passes (weight beats, one config beat, activation beats), drives the
// three input streams and drains o_out with ready/valid handshakes exactly like the Python
// testbench in fpxint_hw/hw/driver.py, and writes the measured cycles of every pass and the
// result beats of the passes marked "keep" (a whole layer's chained passes stay in memory
// only until the next pass has taken their partial sums).
// Payloads are opaque little-endian byte strings laid out by fpxint_hw/hw/layouts.py; the
// only field this program touches is the partial-sum chain (acc of pass c-1 -> psum of
// pass c), whose bit positions come in the vector file.
//
// Usage: harness IN.bin OUT.bin [ready_prob valid_prob seed [COVERAGE.dat]]
//
// A model built with --coverage-toggle writes its toggle counts to COVERAGE.dat at the end
// (fpxint_hw/flow/toggles.py reads them).
//
// IN.bin : "FPXVEC02", u32 w_bytes c_bytes a_bytes o_bytes, u32 n_chain,
//          n_chain x (u32 src_bit dst_bit width),
//          u32 n_acts, per activation block: u32 n_a, n_a*a_bytes
//          u32 n_jobs, per job: u32 n_w acts chain keep, n_w*w_bytes, c_bytes
//          (passes of one K chunk share its activation block: it is sent once)
// OUT.bin: "FPXRES02", u32 n_jobs, per job: u32 n_out, i64 load first_in last_in
//          first_out last_out, then n_out*o_bytes if the job is kept; then u64 total cycles

#include "Vtop.h"
#include "verilated.h"
#if VM_COVERAGE
#include "verilated_cov.h"
#endif

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

// Verilator spells the Verilog port "a_in__valid" as the member "a_in___05Fvalid".
#define PORT(stream, signal) top->stream##___05F##signal

namespace {

using Bytes = std::vector<uint8_t>;

template <typename T>
void put(T& port, const uint8_t* src, size_t n) {
    if constexpr (std::is_integral_v<T>) {
        uint64_t v = 0;
        std::memcpy(&v, src, n < sizeof(T) ? n : sizeof(T));
        port = static_cast<T>(v);
    } else {
        std::memset(port.data(), 0, sizeof(port));
        std::memcpy(port.data(), src, n < sizeof(port) ? n : sizeof(port));
    }
}

template <typename T>
void get(const T& port, uint8_t* dst, size_t n) {
    std::memset(dst, 0, n);
    if constexpr (std::is_integral_v<T>) {
        uint64_t v = port;
        std::memcpy(dst, &v, n < sizeof(T) ? n : sizeof(T));
    } else {
        std::memcpy(dst, port.data(), n < sizeof(port) ? n : sizeof(port));
    }
}

// A field of up to 64 bits at bit offset `off` of a little-endian byte string of `n` bytes.
uint64_t get_field(const uint8_t* p, size_t n, uint32_t off, uint32_t width) {
    if (width > 32)
        return get_field(p, n, off, 32) | (get_field(p, n, off + 32, width - 32) << 32);
    uint64_t v = 0;
    const size_t first = off >> 3, count = std::min<size_t>(8, n - first);
    std::memcpy(&v, p + first, count);
    return (v >> (off & 7)) & ((uint64_t(1) << width) - 1);
}

void set_field(uint8_t* p, size_t n, uint32_t off, uint32_t width, uint64_t value) {
    if (width > 32) {
        set_field(p, n, off, 32, value & 0xffffffffu);
        set_field(p, n, off + 32, width - 32, value >> 32);
        return;
    }
    uint64_t v = 0;
    const size_t first = off >> 3, count = std::min<size_t>(8, n - first);
    std::memcpy(&v, p + first, count);
    const uint64_t mask = ((uint64_t(1) << width) - 1) << (off & 7);
    v = (v & ~mask) | ((value << (off & 7)) & mask);
    std::memcpy(p + first, &v, count);
}

struct Chain { uint32_t src, dst, width; };

struct Job {
    uint32_t n_w = 0, n_a = 0, acts = 0, chain = 0, keep = 0;
    Bytes w, c;
    Bytes a;    // a chained pass's own copy of its activation block (psum fields filled in)
    Bytes out;
    uint32_t n_out = 0;
    int64_t load = -1, first_in = -1, last_in = -1, first_out = -1, last_out = -1;
};

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "harness: %s\n", msg.c_str());
    std::exit(2);
}

uint32_t read_u32(FILE* f) {
    uint32_t v;
    if (std::fread(&v, 4, 1, f) != 1) die("truncated vector file");
    return v;
}

void read_bytes(FILE* f, Bytes& b, size_t n) {
    b.resize(n);
    if (n && std::fread(b.data(), 1, n, f) != n) die("truncated vector file");
}

struct Rng {  // xorshift64*
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 2654435761u + 0x9E3779B97F4A7C15ull) {}
    double next() {
        s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
        return static_cast<double>((s * 2685821657736338717ull) >> 11) / 9007199254740992.0;
    }
};

// One input stream: offers its beats in order; an offered beat stays until accepted.
struct Source {
    const uint8_t* data = nullptr;
    size_t width = 0, count = 0, pos = 0;
    bool offering = false;
    void load(const uint8_t* d, size_t w, size_t n) { data = d; width = w; count = n; pos = 0; offering = false; }
    bool done() const { return pos >= count; }
    void decide(Rng& rng, double p) {
        if (!offering && !done()) offering = p >= 1.0 || rng.next() < p;
    }
    const uint8_t* beat() const { return data + pos * width; }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) die("usage: harness IN.bin OUT.bin [ready_prob valid_prob seed [COVERAGE.dat]]");
    double ready_p = argc > 3 ? std::atof(argv[3]) : 1.0;
    double valid_p = argc > 4 ? std::atof(argv[4]) : 1.0;
    uint64_t seed = argc > 5 ? std::strtoull(argv[5], nullptr, 10) : 0;

    FILE* in = std::fopen(argv[1], "rb");
    if (!in) die(std::string("cannot open ") + argv[1]);
    char magic[8];
    if (std::fread(magic, 1, 8, in) != 8 || std::memcmp(magic, "FPXVEC02", 8) != 0)
        die("not an FPXVEC02 vector file");
    const uint32_t wb = read_u32(in), cb = read_u32(in), ab = read_u32(in), ob = read_u32(in);
    std::vector<Chain> chain(read_u32(in));
    for (auto& ch : chain) { ch.src = read_u32(in); ch.dst = read_u32(in); ch.width = read_u32(in); }
    std::vector<Bytes> blocks(read_u32(in));
    std::vector<uint32_t> block_len(blocks.size());
    for (size_t i = 0; i < blocks.size(); ++i) {
        block_len[i] = read_u32(in);
        read_bytes(in, blocks[i], size_t(block_len[i]) * ab);
    }
    std::vector<Job> jobs(read_u32(in));
    for (auto& j : jobs) {
        j.n_w = read_u32(in); j.acts = read_u32(in); j.chain = read_u32(in); j.keep = read_u32(in);
        if (j.acts >= blocks.size()) die("pass refers to a missing activation block");
        j.n_a = block_len[j.acts];
        read_bytes(in, j.w, size_t(j.n_w) * wb);
        read_bytes(in, j.c, cb);
    }
    std::fclose(in);

    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    auto top = std::make_unique<Vtop>(ctx.get());
    Rng rng(seed);

    top->rst = 1;
    PORT(w_in, valid) = PORT(cfg_in, valid) = PORT(a_in, valid) = 0;
    PORT(o_out, ready) = 0;
    for (int i = 0; i < 2; ++i) { top->clk = 0; top->eval(); top->clk = 1; top->eval(); }
    top->rst = 0;

    Source w, c, a;
    size_t lj = 0, dj = 0;
    enum { LOAD, ISSUE, END } phase = LOAD;
    if (!jobs.empty()) { w.load(jobs[0].w.data(), wb, jobs[0].n_w); c.load(jobs[0].c.data(), cb, 1); }
    else phase = END;
    uint64_t cycle = 0, idle = 0;
    const uint64_t limit = 100000;
    std::vector<uint8_t> obuf(ob);

    for (;;) {
        while (dj < jobs.size() && jobs[dj].n_out >= jobs[dj].n_a) {
            Job& d = jobs[dj];
            Bytes().swap(d.a);
            // an unkept pass's results are needed only by a chained successor
            if (!d.keep && !(dj + 1 < jobs.size() && jobs[dj + 1].chain)) Bytes().swap(d.out);
            ++dj;
        }
        // A chained pass continues the previous pass's sums: wait until all of them are out
        // (the weights and config of the pass may load while they drain).
        const bool prev_done = lj == 0 || !jobs[lj].chain || jobs[lj - 1].n_out >= jobs[lj - 1].n_a;
        if (phase == LOAD && w.done() && c.done() && prev_done) {
            Job& j = jobs[lj];
            j.out.resize(size_t(j.n_a) * ob);
            const uint8_t* beats = blocks[j.acts].data();
            if (j.chain) {
                if (lj == 0) die("first pass cannot be chained");
                Job& p = jobs[lj - 1];
                if (p.n_a != j.n_a) die("chained pass with a different number of vectors");
                j.a.assign(beats, beats + size_t(j.n_a) * ab);
                for (uint32_t m = 0; m < j.n_a; ++m)
                    for (const auto& ch : chain)
                        set_field(&j.a[size_t(m) * ab], ab, ch.dst, ch.width,
                                  get_field(&p.out[size_t(m) * ob], ob, ch.src, ch.width));
                if (!p.keep) Bytes().swap(p.out);     // its sums now live in this pass
                beats = j.a.data();
            }
            a.load(beats, ab, j.n_a);
            phase = ISSUE;
        }
        if (phase == ISSUE && a.done()) {
            if (++lj < jobs.size()) {
                w.load(jobs[lj].w.data(), wb, jobs[lj].n_w);
                c.load(jobs[lj].c.data(), cb, 1);
                phase = LOAD;
            } else {
                phase = END;
            }
        }
        if (phase == END && dj >= jobs.size()) break;

        w.decide(rng, valid_p); c.decide(rng, valid_p); a.decide(rng, valid_p);
        PORT(w_in, valid) = w.offering;
        if (w.offering) put(PORT(w_in, payload), w.beat(), wb);
        PORT(cfg_in, valid) = c.offering;
        if (c.offering) put(PORT(cfg_in, payload), c.beat(), cb);
        PORT(a_in, valid) = a.offering;
        if (a.offering) put(PORT(a_in, payload), a.beat(), ab);
        const bool o_ready = ready_p >= 1.0 || rng.next() < ready_p;
        PORT(o_out, ready) = o_ready;
        top->clk = 0;
        top->eval();

        bool fired = false;
        if (w.offering && PORT(w_in, ready)) {
            if (jobs[lj].load < 0) jobs[lj].load = int64_t(cycle);
            ++w.pos; w.offering = false; fired = true;
        }
        if (c.offering && PORT(cfg_in, ready)) { ++c.pos; c.offering = false; fired = true; }
        if (a.offering && PORT(a_in, ready)) {
            Job& j = jobs[lj];
            if (j.first_in < 0) j.first_in = int64_t(cycle);
            j.last_in = int64_t(cycle);
            ++a.pos; a.offering = false; fired = true;
        }
        if (PORT(o_out, valid) && o_ready) {
            if (dj >= jobs.size()) die("result beat with no pass waiting for it");
            Job& j = jobs[dj];
            get(PORT(o_out, payload), &j.out[size_t(j.n_out) * ob], ob);
            if (j.first_out < 0) j.first_out = int64_t(cycle);
            j.last_out = int64_t(cycle);
            ++j.n_out; fired = true;
        }
        top->clk = 1;
        top->eval();
        ++cycle;
        idle = fired ? 0 : idle + 1;
        if (idle > limit) die("stuck: no transfer for " + std::to_string(idle) + " cycles at cycle "
                              + std::to_string(cycle) + ", pass " + std::to_string(dj));
    }
    top->final();
#if VM_COVERAGE
    if (argc > 6) ctx->coveragep()->write(argv[6]);
#endif

    FILE* out = std::fopen(argv[2], "wb");
    if (!out) die(std::string("cannot write ") + argv[2]);
    std::fwrite("FPXRES02", 1, 8, out);
    uint32_t n = static_cast<uint32_t>(jobs.size());
    std::fwrite(&n, 4, 1, out);
    for (const auto& j : jobs) {
        std::fwrite(&j.n_out, 4, 1, out);
        const int64_t marks[5] = {j.load, j.first_in, j.last_in, j.first_out, j.last_out};
        std::fwrite(marks, 8, 5, out);
        if (j.keep && j.n_out) std::fwrite(j.out.data(), 1, size_t(j.n_out) * ob, out);
    }
    std::fwrite(&cycle, 8, 1, out);
    std::fclose(out);
    return 0;
}
