#include "cpu/thread_pool.h"

namespace vnmc {
namespace cpu {

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) {
    const unsigned hc = std::thread::hardware_concurrency();
    threads = hc ? static_cast<int>(hc) : 1;
  }
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_work_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::drain() {
  for (;;) {
    const size_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n_) return;
    fn_(ctx_, i);
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_work_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      ++busy_;
    }
    drain();
    {
      std::lock_guard<std::mutex> lk(mu_);
      --busy_;
    }
    cv_done_.notify_all();
  }
}

void ThreadPool::for_each(size_t n, void (*fn)(void*, size_t), void* ctx) {
  if (n == 0) return;
  if (workers_.empty() || n == 1) {
    for (size_t i = 0; i < n; ++i) fn(ctx, i);
    return;
  }
  std::lock_guard<std::mutex> call(call_mu_);
  {
    std::lock_guard<std::mutex> lk(mu_);
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    next_.store(0, std::memory_order_relaxed);
    ++generation_;
  }
  cv_work_.notify_all();
  drain();
  // Wait until every worker that joined this job has left drain(). A worker that wakes later sees
  // next_ >= n_ and leaves at once (the job's fields stay valid until the next for_each, which
  // cannot start before this one returns... but a late worker of this generation could observe the
  // next job's fields: that is fine, it then simply helps with the next job).
  std::unique_lock<std::mutex> lk(mu_);
  cv_done_.wait(lk, [&] { return busy_ == 0 && next_.load(std::memory_order_relaxed) >= n_; });
}

}  // namespace cpu
}  // namespace vnmc
