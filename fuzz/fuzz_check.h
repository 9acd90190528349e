// FUZZ_CHECK for the libFuzzer targets in fuzz/: a property that must hold for
// every input. A violation prints the condition and aborts, which libFuzzer
// records as a crash (build-fuzz/crashes/, docs/fuzzing.md). Fuzz-only; not
// for product code, where input never aborts.
#ifndef BENCHFLEET_FUZZ_FUZZ_CHECK_H_
#define BENCHFLEET_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                               \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, \
                   __LINE__, #cond);                                   \
      std::abort();                                                    \
    }                                                                  \
  } while (0)

#endif  // BENCHFLEET_FUZZ_FUZZ_CHECK_H_
