/* The quickstart's benchmark: one deterministic CPU-bound computation, run in several
 * "variants" so that benchfleet has something real to decide about.
 *
 *   demo --mode MODE INPUT_FILE
 *
 * INPUT_FILE holds one integer N (work units). Every mode prints the same checksum of an
 * N-step hash chain, except `wrong`. Modes differ in how much redundant work they do:
 *   baseline  2.0 x N steps          fast   1.0 x N steps (the optimization to KEEP)
 *   slow      2.5 x N steps (DISCARD) wrong  1.0 x N steps, off-by-one checksum (REJECT)
 *   hang      never finishes (KILL)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile uint64_t sink;

static uint64_t chain(uint64_t steps, uint64_t x) {
  for (uint64_t i = 0; i < steps; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    x ^= x >> 33;
  }
  return x;
}

int main(int argc, char** argv) {
  if (argc != 4 || strcmp(argv[1], "--mode") != 0) {
    fprintf(stderr, "usage: demo --mode baseline|fast|slow|wrong|hang INPUT_FILE\n");
    return 2;
  }
  const char* mode = argv[2];
  FILE* f = fopen(argv[3], "r");
  unsigned long long n = 0;
  if (f == NULL || fscanf(f, "%llu", &n) != 1) {
    fprintf(stderr, "demo: cannot read a work size from %s\n", argv[3]);
    return 2;
  }
  fclose(f);
  /* Redundant work, in quarter units of N, on top of the N steps that produce the result. */
  uint64_t extra_quarters;
  if (strcmp(mode, "baseline") == 0) {
    extra_quarters = 4;
  } else if (strcmp(mode, "fast") == 0 || strcmp(mode, "wrong") == 0) {
    extra_quarters = 0;
  } else if (strcmp(mode, "slow") == 0) {
    extra_quarters = 6;
  } else if (strcmp(mode, "hang") == 0) {
    for (;;) pause();
  } else {
    fprintf(stderr, "demo: unknown mode '%s'\n", mode);
    return 2;
  }
  sink = chain(n * extra_quarters / 4, 7);
  uint64_t result = chain(n, 42);
  if (strcmp(mode, "wrong") == 0) result += 1;
  printf("checksum %016llx\n", (unsigned long long)result);
  printf("work_units %llu\n", n);
  return 0;
}
