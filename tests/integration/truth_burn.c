/* The workload of the verdict truth tests (truth_test.cc): burns CPU for a
 * given number of iterations of one dependent multiply-xorshift chain (the
 * loop of bench/bf_cpu20.c), so its time depends on core latency only, not on
 * memory or branch prediction. Statically linked, no allocation.
 *
 *   truth-burn ITERATIONS [--noise PCT] [--hang] [INPUT]
 *
 * Prints one line, "checksum <hex>", derived from INPUT's bytes only (FNV-1a
 * 64): identical copies print identical output, and so do variants that differ
 * only in ITERATIONS, which is how a faster or slower candidate stays "correct"
 * under `correctness: {compare: stdout}`. The chain's result decides the exit
 * status (always 0), so the loop cannot be optimised away.
 *
 *   --noise PCT  adds a random extra amount of work, uniform in
 *                [0, PCT % of ITERATIONS), seeded from /dev/urandom, so that
 *                runs differ on purpose (PCT 100 gives a CV near 19 %).
 *   --hang       prints nothing and sleeps until it is killed.
 *   ITERATIONS 0 is the no-op program (process creation, exec, exit). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long long Chain(unsigned long long n) {
  unsigned long long x = 0x9e3779b97f4a7c15ULL;
  for (unsigned long long i = 0; i < n; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    x ^= x >> 29;
  }
  return x;
}

static unsigned long long RandomU64(void) {
  unsigned long long r = 0;
  int fd = open("/dev/urandom", O_RDONLY);
  if (fd >= 0) {
    if (read(fd, &r, sizeof(r)) != (ssize_t)sizeof(r)) r = 0;
    close(fd);
  }
  return r;
}

static unsigned long long InputChecksum(const char* path) {
  unsigned long long h = 0xcbf29ce484222325ULL;
  if (path == NULL) return h;
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    fprintf(stderr, "truth-burn: cannot open %s\n", path);
    exit(2);
  }
  unsigned char buf[4096];
  ssize_t got;
  while ((got = read(fd, buf, sizeof(buf))) > 0) {
    for (ssize_t i = 0; i < got; ++i) {
      h ^= buf[i];
      h *= 0x100000001b3ULL;
    }
  }
  close(fd);
  return h;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr,
            "usage: truth-burn ITERATIONS [--noise PCT] [--hang] [INPUT]\n");
    return 2;
  }
  unsigned long long n = strtoull(argv[1], NULL, 10);
  double noise_pct = 0;
  int hang = 0;
  const char* input = NULL;
  for (int i = 2; i < argc; ++i) {
    if (strcmp(argv[i], "--noise") == 0 && i + 1 < argc) {
      noise_pct = strtod(argv[++i], NULL);
    } else if (strcmp(argv[i], "--hang") == 0) {
      hang = 1;
    } else {
      input = argv[i];
    }
  }
  if (hang) {
    for (;;) pause();
  }
  unsigned long long extra = 0;
  if (noise_pct > 0) {
    const double u = (double)(RandomU64() >> 11) / 9007199254740992.0;
    extra = (unsigned long long)((double)n * noise_pct / 100.0 * u);
  }
  const unsigned long long x = Chain(n + extra);
  printf("checksum %016llx\n", InputChecksum(input));
  return (int)(x == 42);
}
