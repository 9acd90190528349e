/* A raw posix_spawn+wait4 loop with an idle gap before every run:
 *   bf-gap-loop GAP_US RUNS PROGRAM
 * prints the median run time. It shows what an idle host between runs (as when each run is
 * a separate step ordered over the network) costs the next run, independent of benchfleet. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

static int cmp(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: bf-gap-loop GAP_US RUNS PROGRAM\n");
    return 2;
  }
  const int gap_us = atoi(argv[1]), runs = atoi(argv[2]), warmup = 20;
  double* t = malloc(sizeof(double) * (size_t)runs);
  char* args[] = {argv[3], NULL};
  for (int i = 0; i < runs + warmup; ++i) {
    if (gap_us > 0) usleep((useconds_t)gap_us);
    struct timespec a, b;
    pid_t pid;
    int status;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (posix_spawn(&pid, argv[3], NULL, NULL, args, environ) != 0) return 1;
    waitpid(pid, &status, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (i >= warmup) t[i - warmup] = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
  }
  qsort(t, (size_t)runs, sizeof(double), cmp);
  printf("gap=%dus runs=%d median=%.0f ns\n", gap_us, runs, t[runs / 2]);
  free(t);
  return 0;
}
