// The core's own threads: large GEMMs are split into independent blocks of C, one per thread,
// each computed by a single-threaded OpenBLAS call.
//
// Why not OpenBLAS's threads: its workers spin-wait for each other inside every call. On a
// machine whose cores are shared (another process on one of two cores), a 2-thread sgemm waits
// for a descheduled partner and W4 ran 5.5× slower with 2 threads than with 1 (measured: 12.7 k
// vs 70 k samples/s under a load average of 3). Here the blocks share nothing, the caller
// computes one of them itself, and an idle worker spins only briefly before it sleeps on a
// condition variable, so an oversubscribed machine degrades to about single-threaded speed
// instead of collapsing.
#pragma once

#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

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

    int threads() const { return threads_; }

    // Use n threads in all (the caller and n - 1 workers); n ≥ 1. Waits for a running run().
    void set_threads(int n) {
        std::lock_guard<std::mutex> serial(run_mutex_);
        stop_workers();
        threads_ = n;
        const uint64_t now = generation_.load();  // workers wait for the generation after this one
        for (int i = 1; i < n; i++) workers_.emplace_back([this, i, now] { work(i, now); });
    }

    // task(i) for i in [0, parts), parts ≤ threads(): the caller runs part 0, worker i part i.
    // One run at a time (the core holds no two trainings in one pool concurrently; a mutex keeps
    // concurrent callers, e.g. two Python threads training two models, correct if serialized).
    void run(int parts, const std::function<void(int)>& task) {
        if (parts <= 1) {
            task(0);
            return;
        }
        std::lock_guard<std::mutex> serial(run_mutex_);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            task_ = &task;
            parts_ = parts;
            pending_.store(parts - 1, std::memory_order_relaxed);
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        task(0);
        while (pending_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
    }

private:
    // A forked child has only the forking thread: forget the workers (their std::thread objects
    // name threads that do not exist here) and the locks (a parent thread may have held them),
    // then start fresh workers, as OpenBLAS does.
    void after_fork_in_child() {
        new (&workers_) std::vector<std::thread>();  // the parent's objects are leaked, never joined
        new (&run_mutex_) std::mutex();
        new (&mutex_) std::mutex();
        new (&wake_) std::condition_variable();
        stop_ = false;
        set_threads(threads_);
    }

    ThreadPool() = default;  // one thread until told otherwise: the Python package sets the default

    void work(int index, uint64_t seen) {
        for (;;) {
            // A short spin (tens of µs) catches back-to-back GEMMs of one step; then sleep.
            for (int spin = 0; spin < kSpins && generation_.load(std::memory_order_acquire) == seen && !stop_.load(); spin++) {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            }
            std::unique_lock<std::mutex> lock(mutex_);
            wake_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
            if (stop_) return;
            seen = generation_.load(std::memory_order_acquire);
            const std::function<void(int)>* task = task_;
            const int parts = parts_;
            lock.unlock();
            if (index < parts) {
                (*task)(index);
                pending_.fetch_sub(1, std::memory_order_acq_rel);
            }
        }
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

    static constexpr int kSpins = 2000;
    int threads_ = 1;
    std::vector<std::thread> workers_;
    std::mutex run_mutex_, mutex_;
    std::condition_variable wake_;
    std::atomic<uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    const std::function<void(int)>* task_ = nullptr;
    int parts_ = 0;
    std::atomic<bool> stop_{false};
};

}  // namespace densefit
