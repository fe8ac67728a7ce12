// bench_micro: google-benchmark micro benchmarks of the malloc API: malloc+free pairs at every
// gomalloc size-class edge up to 32 KiB (and one byte past a few), large objects to 1 MiB, random sizes, batches of 1000,
// calloc, aligned_alloc, realloc in place and growth. Calls
// plain malloc, so one binary runs under any allocator: LD_PRELOAD=build/alloc/libgomalloc.so build/bench/bench_micro
#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

constexpr unsigned kTable = 4096;  // power of two

// Sizes 16..1024, uniform, from a fixed seed: the same sequence under every allocator.
struct SizeTable {
    uint32_t size[kTable];
    SizeTable() {
        uint64_t s = 0x9e3779b97f4a7c15ULL;
        for (unsigned i = 0; i < kTable; i++) {
            s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
            size[i] = 16 + (uint32_t)((s * 0x2545f4914f6cdd1dULL >> 33) % 1009);
        }
    }
};
const SizeTable g_sizes;

void BM_malloc_free(benchmark::State &st) {
    const size_t n = (size_t)st.range(0);
    for (auto _ : st) {
        void *p = std::malloc(n);
        benchmark::DoNotOptimize(p);
        std::free(p);
    }
    st.SetItemsProcessed(st.iterations());
}
// Every size-class edge (gomalloc's class sizes, Go's table without 8 and 24 B; the powers of two
// among them are the usual edges of other allocators too), plus one byte past some edges.
void ClassEdges(benchmark::internal::Benchmark *b) {
    static const int kClass[] = {
        16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320, 352,
        384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048,
        2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728,
        10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672,
        32768};
    for (int n : kClass) b->Arg(n);
    for (int n : {17, 129, 257, 1025, 4097, 32769}) b->Arg(n);
}
BENCHMARK(BM_malloc_free)->Apply(ClassEdges);
// Large objects (issue 5): a few page counts a per-thread span cache should serve.
BENCHMARK(BM_malloc_free)->Arg(65536)->Arg(131072)->Arg(262144)->Arg(1048576);
BENCHMARK(BM_malloc_free)->Arg(64)->Threads(2)->UseRealTime();

void BM_malloc_free_random(benchmark::State &st) {
    unsigned i = 0;
    for (auto _ : st) {
        void *p = std::malloc(g_sizes.size[i]);
        benchmark::DoNotOptimize(p);
        std::free(p);
        i = (i + 1) & (kTable - 1);
    }
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_malloc_free_random);

// Allocate 1000 objects, then free them in allocation order. Arg 0 means random sizes.
void BM_batch1000(benchmark::State &st) {
    const size_t n = (size_t)st.range(0);
    std::vector<void *> ptr(1000);
    unsigned k = 0;
    for (auto _ : st) {
        for (unsigned i = 0; i < 1000; i++) {
            ptr[i] = std::malloc(n ? n : g_sizes.size[(k + i) & (kTable - 1)]);
            benchmark::DoNotOptimize(ptr[i]);
        }
        for (unsigned i = 0; i < 1000; i++) std::free(ptr[i]);
        k += 7;
    }
    st.SetItemsProcessed(st.iterations() * 1000);
}
BENCHMARK(BM_batch1000)->Arg(16)->Arg(64)->Arg(256)->Arg(0);

void BM_calloc(benchmark::State &st) {
    const size_t n = (size_t)st.range(0);
    for (auto _ : st) {
        void *p = std::calloc(1, n);
        benchmark::DoNotOptimize(p);
        std::free(p);
    }
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_calloc)->Arg(16)->Arg(256)->Arg(4096)->Arg(65536);

void BM_aligned_alloc64(benchmark::State &st) {
    const size_t n = (size_t)st.range(0);
    for (auto _ : st) {
        void *p = aligned_alloc(64, n);
        benchmark::DoNotOptimize(p);
        std::free(p);
    }
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_aligned_alloc64)->Arg(64)->Arg(256)->Arg(1024);

void BM_aligned_alloc4096(benchmark::State &st) {
    const size_t n = (size_t)st.range(0);
    for (auto _ : st) {
        void *p = aligned_alloc(4096, n);
        benchmark::DoNotOptimize(p);
        std::free(p);
    }
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_aligned_alloc4096)->Arg(4096)->Arg(65536);

// realloc that stays in place: alternate between n and n - 8 bytes (same size class in every
// allocator here), writing the last byte. Items are realloc calls.
void BM_realloc_inplace(benchmark::State &st) {
    const size_t n = (size_t)st.range(0);
    char *p = (char *)std::malloc(n);
    size_t cur = n;
    for (auto _ : st) {
        cur = cur == n ? n - 8 : n;
        p = (char *)std::realloc(p, cur);
        p[cur - 1] = 1;
        benchmark::DoNotOptimize(p);
    }
    std::free(p);
    st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_realloc_inplace)->Arg(64)->Arg(1024)->Arg(16384)->Arg(262144);

// Grow a block from 16 B to range(0) in 16-byte steps (the in-place growth case), touching the
// last byte each time so a copying realloc is not free.
void BM_realloc_grow16(benchmark::State &st) {
    const size_t limit = (size_t)st.range(0);
    for (auto _ : st) {
        char *p = (char *)std::malloc(16);
        for (size_t s = 32; s <= limit; s += 16) {
            p = (char *)std::realloc(p, s);
            p[s - 1] = 1;
        }
        benchmark::DoNotOptimize(p);
        std::free(p);
    }
    st.SetItemsProcessed(st.iterations() * (int64_t)(limit / 16 - 1));
}
BENCHMARK(BM_realloc_grow16)->Arg(256)->Arg(4096);

// Doubling growth 16 B -> 64 KiB (crosses into large objects).
void BM_realloc_double(benchmark::State &st) {
    for (auto _ : st) {
        char *p = (char *)std::malloc(16);
        for (size_t s = 32; s <= 65536; s *= 2) {
            p = (char *)std::realloc(p, s);
            p[s - 1] = 1;
        }
        benchmark::DoNotOptimize(p);
        std::free(p);
    }
    st.SetItemsProcessed(st.iterations() * 12);
}
BENCHMARK(BM_realloc_double);

const char *malloc_name() {
    if (void *sym = dlsym(RTLD_DEFAULT, "gm_is_redirected")) {
        int (*f)(void);
        std::memcpy(&f, &sym, sizeof sym);
        return f() ? "gomalloc" : "glibc(gomalloc-not-redirected)";
    }
    if (dlsym(RTLD_DEFAULT, "mallctl")) return "jemalloc";
    if (dlsym(RTLD_DEFAULT, "mi_malloc")) return "mimalloc";
    if (dlsym(RTLD_DEFAULT, "tc_malloc")) return "tcmalloc";
    return "glibc";
}

}  // namespace

int main(int argc, char **argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::AddCustomContext("allocator", malloc_name());
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
