// The core's own threads: a large GEMM is cut into independent blocks of C and the threads
// claim blocks until none is left, each computed by a single-threaded OpenBLAS call.
//
// Why not OpenBLAS's threads: its workers spin-wait for each other inside every call, with a
// fixed share of the work each. On a machine whose cores are shared (another process on one of
// two cores) a 2-thread sgemm waits for a descheduled partner, and W4 ran several times slower
// with 2 OpenBLAS threads than with 1 under load (docs/performance.md). Here
// blocks are claimed dynamically, so the thread that runs does the work that is left (the caller
// can do all of it); an idle worker spins only briefly before it sleeps on a condition variable.
#pragma once

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "inline.hpp"

namespace densefit {

class ThreadPool {
public:
    static ThreadPool& instance() {
        static ThreadPool* pool = [] {
            pthread_atfork(nullptr, nullptr, [] { instance().after_fork_in_child(); });
            return new ThreadPool();  // never destroyed: workers must not be joined during interpreter exit
        }();
        return *pool;
    }

    int threads() const { return threads_.load(std::memory_order_relaxed); }

    // Use n threads in all (the caller and n - 1 workers); n ≥ 1. Waits for a running run().
    void set_threads(int n) {
        std::lock_guard<std::mutex> serial(run_mutex_);
        stop_workers();
        threads_ = n;
        for (int i = 1; i < n; i++) workers_.emplace_back([this] { work(); });
    }

    // task(i) for every i in [0, blocks), each exactly once, on the caller and the workers; returns
    // when all are done. Runs are serialized (two Python threads training two models share the pool).
    // A task that calls run() itself (a product inside a chunk of the data-parallel pass) runs
    // those blocks on its own thread: the pool is busy with the outer run.
    void run(int blocks, const std::function<void(int)>& task) {
        if (blocks <= 1 || threads() <= 1 || inside_task()) {
            for (int i = 0; i < blocks; i++) task(i);
            return;
        }
        std::lock_guard<std::mutex> serial(run_mutex_);
        uint64_t generation;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            generation = ++generation_;
            task_ = &task;
            blocks_ = blocks;
            done_.store(0, std::memory_order_relaxed);
            cursor_.store(generation << 32, std::memory_order_release);  // (generation, next block 0)
        }
        wake_.notify_all();
        claim_all(generation, blocks, task);
        while (done_.load(std::memory_order_acquire) != blocks) std::this_thread::yield();
    }

private:
    ThreadPool() = default;  // one thread until told otherwise: the Python package sets the default

    // Run blocks of this generation until none is left. A worker that wakes late sees a newer
    // generation in the cursor and claims nothing of a run that has moved on.
    void claim_all(uint64_t generation, int blocks, const std::function<void(int)>& task) {
        uint64_t cursor = cursor_.load(std::memory_order_acquire);
        for (;;) {
            if ((cursor >> 32) != generation || static_cast<int>(cursor & 0xffffffffu) >= blocks) return;
            if (!cursor_.compare_exchange_weak(cursor, cursor + 1, std::memory_order_acq_rel)) continue;
            inside_task() = true;
            task(static_cast<int>(cursor & 0xffffffffu));
            inside_task() = false;
            done_.fetch_add(1, std::memory_order_acq_rel);
            cursor = cursor_.load(std::memory_order_acquire);
        }
    }

    void work() {
        uint64_t seen = 0;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            seen = generation_;
        }
        for (;;) {
            // A short spin (tens of µs) catches the back-to-back GEMMs of one step; then sleep.
            for (int spin = 0; spin < kSpins && (cursor_.load(std::memory_order_acquire) >> 32) == seen && !stop_; spin++) {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            }
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
            const std::function<void(int)>* task = task_;
            const int blocks = blocks_;
            lock.unlock();
            claim_all(seen, blocks, *task);  // task_ stays valid while blocks of `seen` remain unclaimed
        }
    }

    // A forked child has only the forking thread: forget the workers (their std::thread objects
    // name threads that do not exist here) and the locks (a parent thread may have held them),
    // then start fresh workers, as OpenBLAS does.
    void after_fork_in_child() {
        new (&workers_) std::vector<std::thread>();  // the parent's objects are leaked, never joined
        new (&run_mutex_) std::mutex();
        new (&mutex_) std::mutex();
        new (&wake_) std::condition_variable();
        stop_ = false;
        set_threads(threads());
    }

    void stop_workers() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        wake_.notify_all();
        for (std::thread& t : workers_) t.join();
        workers_.clear();
        stop_ = false;
    }

    static bool& inside_task() {
        thread_local bool inside = false;
        return inside;
    }

    static constexpr int kSpins = 2000;
    std::atomic<int> threads_{1};  // read by callers deciding how to split, outside the lock
    std::vector<std::thread> workers_;
    std::mutex run_mutex_;  // one run (or set_threads) at a time
    std::mutex mutex_;      // guards generation_, task_, blocks_, stop_ changes and the sleep
    std::condition_variable wake_;
    uint64_t generation_ = 0;
    const std::function<void(int)>* task_ = nullptr;
    int blocks_ = 0;
    std::atomic<uint64_t> cursor_{0};  // (generation << 32) | next unclaimed block
    std::atomic<int> done_{0};
    std::atomic<bool> stop_{false};
};

// fn(begin, end) on consecutive ranges that cover [0, n): one range when n < min_n or the pool
// has one thread, else two per thread (claimed dynamically, as GEMM blocks are), their edges on
// multiples of 16 elements so no two threads write one cache line. For elementwise passes whose
// result does not depend on the split.
template <class F>
DENSEFIT_ALWAYS_INLINE void parallel_ranges(int64_t n, int64_t min_n, F&& fn) {
    if (n < min_n) {  // before the pool is looked at: W1's update of 35 parameters runs once per sample
        fn(int64_t{0}, n);
        return;
    }
    ThreadPool& pool = ThreadPool::instance();
    constexpr int64_t kAlign = 16;
    const int parts = static_cast<int>(std::min<int64_t>(2 * pool.threads(), n / kAlign));
    if (parts <= 1) {
        fn(int64_t{0}, n);
        return;
    }
    const int64_t chunk = (n / parts + kAlign - 1) / kAlign * kAlign;
    pool.run(parts, [&](int part) {
        const int64_t begin = std::min(n, chunk * part), end = part + 1 == parts ? n : std::min(n, chunk * (part + 1));
        if (begin < end) fn(begin, end);
    });
}

}  // namespace densefit
