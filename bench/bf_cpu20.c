/* A deterministic CPU-bound benchmark of about 20 ms (statically linked, no
 * I/O, no allocation). `bf-cpu20 [ITERATIONS]`; the default was calibrated on
 * the benchmark host (see docs/perf/agent-timing.md). The loop is one dependent
 * multiply-xorshift chain, so its time depends on core latency only, not on
 * memory or branch prediction. */
#include <stdlib.h>

#ifndef BF_CPU20_ITERATIONS
#define BF_CPU20_ITERATIONS 10000000ULL
#endif

int main(int argc, char** argv) {
  unsigned long long n =
      argc > 1 ? strtoull(argv[1], 0, 10) : BF_CPU20_ITERATIONS;
  unsigned long long x = 0x9e3779b97f4a7c15ULL;
  for (unsigned long long i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    x ^= x >> 29;
  }
  /* Exit status depends on the result, so the loop cannot be optimised away; it
   * is always 0. */
  return (int)(x == 42);
}
