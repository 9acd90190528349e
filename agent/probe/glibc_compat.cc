// Linked into the benchfleet-probe executable only, to keep the glibc it needs
// at 2.35 (Ubuntu 22.04) rather than the build host's 2.36.
//
// Why: with -static-libstdc++, any exception type (std::runtime_error, thrown
// by nlohmann_json) pulls libstdc++'s copy-on-write string instantiations,
// which pull std::random_device, which references arc4random@GLIBC_2.36. The
// tool never uses random_device; this definition satisfies the reference inside
// the executable so no versioned import remains. (The 2.35 floor comes from the
// static libgcc unwinder's _dl_find_object and cannot be shimmed.)
#include <errno.h>
#include <stdint.h>
#include <sys/random.h>

extern "C" uint32_t arc4random(void) {
  uint32_t value = 0;
  while (getrandom(&value, sizeof(value), 0) < 0 && errno == EINTR) {
  }
  return value;
}
