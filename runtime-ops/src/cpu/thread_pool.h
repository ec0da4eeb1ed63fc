// A small persistent std::thread pool implementing cpu::Parallel (used by the tests, the benchmark,
// and by the ORT kernel only when onnxruntime's own intra-op pool is unavailable).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include "cpu/packed_gemm.h"

namespace vnmc {
namespace cpu {

class ThreadPool final : public Parallel {
 public:
  // threads: total threads working on a for_each, the calling thread included (<= 0: all cores).
  explicit ThreadPool(int threads = 0);
  ~ThreadPool() override;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const override { return static_cast<int>(workers_.size()) + 1; }
  void for_each(size_t n, void (*fn)(void*, size_t), void* ctx) override;

 private:
  void worker_loop();
  void drain();

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  std::mutex call_mu_;  // one for_each at a time
  uint64_t generation_ = 0;
  bool stop_ = false;
  int busy_ = 0;
  // the current job
  void (*fn_)(void*, size_t) = nullptr;
  void* ctx_ = nullptr;
  size_t n_ = 0;
  std::atomic<size_t> next_{0};
};

}  // namespace cpu
}  // namespace vnmc
