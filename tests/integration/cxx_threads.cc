// cxx_threads.cc: a three-stage C++ pipeline for the integration suite. Producer threads build
// Items (std::string, std::map, std::vector, over-aligned blocks from aligned new, 64..4096),
// worker threads rewrite them, and the main thread checks and deletes them, so most objects
// are freed by a thread other than the one that allocated them. Prints a checksum that does
// not depend on scheduling. Under gomalloc (gm_owns found with dlsym) it also checks that
// operator new and aligned new memory came from gomalloc's heap.
#include <dlfcn.h>

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

template <std::size_t A> struct alignas(A) Block {
    unsigned char bytes[A / 2 + 8];
};

struct Item {
    std::uint64_t id = 0;
    std::string name;
    std::map<int, std::string> fields;
    std::vector<std::uint64_t> values;
    std::unique_ptr<Block<64>> b64;
    std::unique_ptr<Block<256>> b256;
    std::unique_ptr<Block<1024>> b1k;
    std::unique_ptr<Block<4096>> b4k;
    std::unique_ptr<Block<128>[]> arr;  // aligned new[]
};

template <class T> class Queue {
  public:
    void push(T v) {
        std::unique_lock<std::mutex> l(m_);
        notfull_.wait(l, [&] { return q_.size() < 1024; });
        q_.push_back(std::move(v));
        nonempty_.notify_one();
    }
    bool pop(T &out) {  // false once closed and drained
        std::unique_lock<std::mutex> l(m_);
        nonempty_.wait(l, [&] { return !q_.empty() || closed_; });
        if (q_.empty()) return false;
        out = std::move(q_.front());
        q_.pop_front();
        notfull_.notify_one();
        return true;
    }
    void close() {
        std::lock_guard<std::mutex> l(m_);
        closed_ = true;
        nonempty_.notify_all();
    }

  private:
    std::mutex m_;
    std::condition_variable nonempty_, notfull_;
    std::deque<T> q_;
    bool closed_ = false;
};

static const int kProducers = 3, kWorkers = 3;
static int kPerProducer = 400000;  // argv[1] overrides
static int (*owns)(const void *);
static std::uint64_t bad_align, not_owned, owned_checked;

static std::uint64_t mix(std::uint64_t x) {
    x ^= x >> 31; x *= 0x9e3779b97f4a7c15ull; x ^= x >> 29;
    return x;
}

static std::unique_ptr<Item> make_item(std::uint64_t id) {
    auto it = std::make_unique<Item>();
    it->id = id;
    it->name = "item-" + std::to_string(id) + std::string(id % 97, 'n');
    for (int k = 0; k < int(id % 13); k++) it->fields[k * 7] = std::string(1 + (id + k) % 150, char('a' + k));
    it->values.resize(id % 300);
    for (std::size_t k = 0; k < it->values.size(); k++) it->values[k] = mix(id + k);
    it->b64.reset(new Block<64>);
    it->b256.reset(new Block<256>);
    if (id % 3 == 0) it->b1k.reset(new Block<1024>);
    if (id % 7 == 0) it->b4k.reset(new Block<4096>);
    if (id % 5 == 0) it->arr.reset(new Block<128>[1 + id % 9]);
    it->b64->bytes[0] = static_cast<unsigned char>(id);
    return it;
}

// The worker stage: reallocates the name, adds map entries, trims the vector.
static void rewrite(Item &it) {
    it.name += "/" + std::to_string(mix(it.id) % 100000);
    it.fields[1000] = it.name;
    it.fields.erase(0);
    if (it.values.size() > 10) it.values.erase(it.values.begin(), it.values.begin() + 10);
    it.values.shrink_to_fit();
}

static bool aligned(const void *p, std::size_t a) { return reinterpret_cast<std::uintptr_t>(p) % a == 0; }

static std::uint64_t check_and_sum(const Item &it) {
    if (!aligned(it.b64.get(), 64) || !aligned(it.b256.get(), 256) ||
        (it.b1k && !aligned(it.b1k.get(), 1024)) || (it.b4k && !aligned(it.b4k.get(), 4096)) ||
        (it.arr && !aligned(it.arr.get(), 128)))
        bad_align++;
    if (owns && it.id % 16 == 0) {
        const void *ps[] = {&it, it.name.data(), it.b64.get(), it.b256.get(), it.b1k.get(), it.b4k.get(), it.arr.get()};
        for (const void *p : ps)
            if (p) { owned_checked++; if (!owns(p)) not_owned++; }
    }
    std::uint64_t h = mix(it.id) + it.name.size() * 31 + it.b64->bytes[0];
    for (const auto &kv : it.fields) h += mix(kv.first + kv.second.size() + std::uint64_t(kv.second[0]));
    for (std::uint64_t v : it.values) h ^= mix(v);
    return h;
}

int main(int argc, char **argv) {
    if (argc > 1) kPerProducer = std::atoi(argv[1]);
    owns = reinterpret_cast<int (*)(const void *)>(dlsym(RTLD_DEFAULT, "gm_owns"));
    Queue<std::unique_ptr<Item>> built, rewritten;
    std::vector<std::thread> producers, workers;
    for (int p = 0; p < kProducers; p++)
        producers.emplace_back([&, p] {
            for (int i = 0; i < kPerProducer; i++) built.push(make_item(std::uint64_t(p) * kPerProducer + i));
        });
    for (int w = 0; w < kWorkers; w++)
        workers.emplace_back([&] {
            std::unique_ptr<Item> it;
            while (built.pop(it)) { rewrite(*it); rewritten.push(std::move(it)); }
        });
    std::thread closer([&] {
        for (auto &t : producers) t.join();
        built.close();
        for (auto &t : workers) t.join();
        rewritten.close();
    });
    std::uint64_t sum = 0, n = 0;
    std::unique_ptr<Item> it;
    while (rewritten.pop(it)) { sum += check_and_sum(*it); n++; it.reset(); }
    closer.join();
    std::printf("items %llu checksum %016llx misaligned %llu\n", (unsigned long long)n,
                (unsigned long long)sum, (unsigned long long)bad_align);
    if (owns)
        std::fprintf(stderr, "gm_owns checked %llu pointers, %llu not gomalloc's\n",
                     (unsigned long long)owned_checked, (unsigned long long)not_owned);
    return bad_align || not_owned ? 1 : 0;
}
