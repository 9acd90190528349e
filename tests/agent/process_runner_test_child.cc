// Helper child for process_runner_test: small, deterministic behaviours that
// are awkward to get from the shell.
//   process_runner_test_child alloc MIB   allocate MIB MiB, touch every page,
//   exit 0 process_runner_test_child spin MS     burn MS ms of this process's
//   CPU time, exit 0
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

long long CpuNs() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s alloc MIB | spin MS\n", argv[0]);
    return 2;
  }
  const long long n = std::atoll(argv[2]);
  if (std::strcmp(argv[1], "alloc") == 0) {
    const size_t bytes = static_cast<size_t>(n) << 20;
    volatile char* p = static_cast<volatile char*>(std::malloc(bytes));
    if (p == nullptr) return 3;
    for (size_t i = 0; i < bytes; i += 4096) p[i] = 1;
    return 0;
  }
  if (std::strcmp(argv[1], "spin") == 0) {
    const long long until = CpuNs() + n * 1'000'000LL;
    volatile unsigned long long x = 1;
    while (CpuNs() < until) {
      for (int i = 0; i < 10000; ++i)
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    }
    return 0;
  }
  return 2;
}
