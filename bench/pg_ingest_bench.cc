// bf-pg-ingest-bench: how fast PgStore takes host probe samples, batched
// (RecordSamples with batches of --batch-size, one COPY each) versus one row
// per statement (RecordSamples called with one-sample vectors), in one run
// against a throwaway PostgreSQL cluster (tests/testing/pg_cluster.h) with
// the server's default, durable settings. docs/perf/pg-ingest.md records the
// figures and how to rerun.
//
// The two modes alternate round by round (which goes first alternates too),
// so that both see the same machine state; each round writes to its own
// attempt id, and at the end the rows stored are counted per attempt and must
// match what was acknowledged. Prints the environment and a markdown table
// (or JSON with --json).
//
// Usage: bf-pg-ingest-bench [--rounds N] [--batched-rows N] [--single-rows N]
//                           [--batch-size N] [--json]
// Single-threaded.
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "controller/store/pg_store.h"
#include "controller/store/store.h"
#include "spdlog/spdlog.h"
#include "tests/testing/pg_cluster.h"

namespace {

using benchfleet::PgOptions;
using benchfleet::PgStore;
using benchfleet::SampleRecord;

struct Flags {
  int rounds = 5;
  int batched_rows = 100'000;  // per round
  int single_rows = 2'000;     // per round
  int batch_size = 1000;
  bool json = false;
};

bool ParseFlags(int argc, char** argv, Flags* flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](int* out) {
      if (i + 1 >= argc) return false;
      *out = std::atoi(argv[++i]);
      return *out > 0;
    };
    bool ok = true;
    if (arg == "--rounds") {
      ok = value(&flags->rounds);
    } else if (arg == "--batched-rows") {
      ok = value(&flags->batched_rows);
    } else if (arg == "--single-rows") {
      ok = value(&flags->single_rows);
    } else if (arg == "--batch-size") {
      ok = value(&flags->batch_size);
    } else if (arg == "--json") {
      flags->json = true;
    } else {
      ok = false;
    }
    if (!ok) {
      std::cerr << "usage: bf-pg-ingest-bench [--rounds N] [--batched-rows N] "
                   "[--single-rows N] [--batch-size N] [--json]\n";
      return false;
    }
  }
  return true;
}

// A sample as an agent on an 8-core host with one GPU would send it.
SampleRecord MakeSample(int64_t attempt_id, int64_t i) {
  SampleRecord s;
  s.attempt_id = attempt_id;
  s.step_seq = i / 50;
  s.agent_id = "bench-host-01";
  s.taken_at =
      absl::FromUnixSeconds(1'700'000'000) + absl::Milliseconds(100 * i);
  s.cpu_util = 0.97 + (i % 3) * 0.01;
  s.load1 = 1.02 + (i % 10) * 0.01;
  s.mem_available_bytes = 5.4e10 - static_cast<double>(i % 1000) * 4096;
  s.min_freq_mhz = 3400.0 + static_cast<double>(i % 7);
  s.max_cpu_temp_c = 61.5 + (i % 5) * 0.5;
  s.max_gpu_temp_c = 44.0 + (i % 3);
  s.gpu_util = 0.0;
  s.throttle_events = 12;
  s.competing_cpu = 0.004;
  std::string detail = R"({"cores":[)";
  for (int core = 0; core < 8; ++core) {
    if (core > 0) detail += ",";
    detail += R"({"mhz":)" + std::to_string(3400 + core * 13 + i % 7) +
              R"(,"util":0.9)" + std::to_string(core) + "}";
  }
  detail += R"(],"gpus":[{"temp_c":44,"util":0.0,"mem_bytes":1048576}]})";
  s.detail_json = detail;
  return s;
}

std::string ReadFirstLine(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  }
  return "unknown";
}

// CPU seconds (user + system) used so far by this process.
double ClientCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
         usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

// CPU seconds used so far by the PostgreSQL server: the postmaster and its
// children (our backend, the WAL writer, the checkpointer, ...). A child that
// exited in between is not counted; none does during a run.
double ServerCpuSeconds(pid_t postmaster) {
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  double total = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() ||
        name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::ifstream in(entry.path() / "stat");
    std::string stat;
    std::getline(in, stat);
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    // After "pid (comm)": state ppid pgrp session tty tpgid flags minflt
    // cminflt majflt cmajflt utime stime ...
    std::istringstream fields(stat.substr(paren + 2));
    std::string state;
    long ppid = 0;
    unsigned long skip = 0, utime = 0, stime = 0;
    fields >> state >> ppid;
    for (int i = 0; i < 9; ++i) fields >> skip;
    fields >> utime >> stime;
    const long pid = std::atol(name.c_str());
    if (pid == postmaster || ppid == postmaster) {
      total += (utime + stime) / ticks;
    }
  }
  return total;
}

// Ticks of all CPUs so far, and of them those stolen by the hypervisor
// (/proc/stat): on a shared VM the figures move with the steal.
struct CpuTicks {
  uint64_t total = 0;
  uint64_t steal = 0;
};
CpuTicks ReadCpuTicks() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  CpuTicks ticks;
  in >> cpu;
  for (int i = 0; i < 10; ++i) {
    uint64_t value = 0;
    if (!(in >> value)) break;
    // user nice system idle iowait irq softirq steal guest guest_nice; the
    // guest times are already inside user and nice.
    if (i < 8) ticks.total += value;
    if (i == 7) ticks.steal = value;
  }
  return ticks;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) return 2;
  spdlog::set_level(spdlog::level::warn);  // keep the migrations' log lines out

  auto cluster = benchfleet::testing::PgCluster::Start();
  if (!cluster.ok()) {
    std::cerr << "cannot start the throwaway PostgreSQL cluster: "
              << cluster.status() << "\n";
    return 1;
  }
  PgOptions options;
  options.url = (*cluster)->url();
  auto opened = PgStore::Open(options);
  if (!opened.ok()) {
    std::cerr << opened.status() << "\n";
    return 1;
  }
  std::unique_ptr<PgStore> store = std::move(opened).value();

  // Warm-up: connection, prepared statements, the table's first pages.
  {
    std::vector<SampleRecord> warm;
    for (int i = 0; i < flags.batch_size; ++i) warm.push_back(MakeSample(1, i));
    if (absl::Status s = store->RecordSamples(warm); !s.ok()) {
      std::cerr << s << "\n";
      return 1;
    }
    for (int i = 0; i < 100; ++i) {
      if (absl::Status s = store->RecordSamples({MakeSample(1, i)}); !s.ok()) {
        std::cerr << s << "\n";
        return 1;
      }
    }
  }

  auto postmaster = (*cluster)->PostmasterPid();
  if (!postmaster.ok()) {
    std::cerr << postmaster.status() << "\n";
    return 1;
  }
  const CpuTicks ticks_before = ReadCpuTicks();
  std::vector<double> batched_rate, single_rate;
  // CPU seconds over all rounds of a mode: [0] this client, [1] the server.
  double batched_cpu[2] = {0, 0}, single_cpu[2] = {0, 0};
  int64_t batched_total = 0, single_total = 0;
  absl::Duration batched_time, single_time;
  int64_t next_attempt = 100;
  std::vector<std::pair<int64_t, int64_t>> expected;  // attempt, rows
  for (int round = 0; round < flags.rounds; ++round) {
    for (int half = 0; half < 2; ++half) {
      const bool batched = (round + half) % 2 == 0;
      const int64_t attempt = next_attempt++;
      const int rows = batched ? flags.batched_rows : flags.single_rows;
      // Build the calls' arguments first: the figure is the store's, not the
      // generator's.
      const int per_call = batched ? flags.batch_size : 1;
      std::vector<std::vector<SampleRecord>> calls;
      for (int i = 0; i < rows; i += per_call) {
        std::vector<SampleRecord>& call = calls.emplace_back();
        for (int j = i; j < std::min(rows, i + per_call); ++j) {
          call.push_back(MakeSample(attempt, j));
        }
      }
      const double client_before = ClientCpuSeconds();
      const double server_before = ServerCpuSeconds(*postmaster);
      const absl::Time start = absl::Now();
      for (const std::vector<SampleRecord>& call : calls) {
        if (absl::Status s = store->RecordSamples(call); !s.ok()) {
          std::cerr << s << "\n";
          return 1;
        }
      }
      const absl::Duration took = absl::Now() - start;
      double* cpu = batched ? batched_cpu : single_cpu;
      cpu[0] += ClientCpuSeconds() - client_before;
      cpu[1] += ServerCpuSeconds(*postmaster) - server_before;
      const double rate = rows / absl::ToDoubleSeconds(took);
      (batched ? batched_rate : single_rate).push_back(rate);
      (batched ? batched_total : single_total) += rows;
      (batched ? batched_time : single_time) += took;
      expected.emplace_back(attempt, rows);
    }
  }

  const CpuTicks ticks_after = ReadCpuTicks();
  for (const auto& [attempt, rows] : expected) {
    auto stored = store->ListSamples(attempt);
    if (!stored.ok() || static_cast<int64_t>(stored->size()) != rows) {
      std::cerr << "attempt " << attempt << ": expected " << rows
                << " rows stored, found "
                << (stored.ok() ? std::to_string(stored->size())
                                : stored.status().ToString())
                << "\n";
      return 1;
    }
  }

  const double steal_percent =
      ticks_after.total > ticks_before.total
          ? 100.0 *
                static_cast<double>(ticks_after.steal - ticks_before.steal) /
                static_cast<double>(ticks_after.total - ticks_before.total)
          : 0;
  utsname uts{};
  uname(&uts);
  const std::string cpu = ReadFirstLine("/proc/cpuinfo", "model name");
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  const double batched_median = Median(batched_rate);
  const double single_median = Median(single_rate);
  const double batched_overall =
      batched_total / absl::ToDoubleSeconds(batched_time);
  const double single_overall =
      single_total / absl::ToDoubleSeconds(single_time);
  const std::string date =
      absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::Now(), absl::UTCTimeZone());
  const long cores = sysconf(_SC_NPROCESSORS_ONLN);

  // CPU microseconds per row, and the rate the busier side alone would allow
  // if it had a core to itself (client and server run in parallel).
  auto us_per_row = [](double seconds, int64_t rows) {
    return rows == 0 ? 0 : seconds * 1e6 / static_cast<double>(rows);
  };
  const double batched_client_us = us_per_row(batched_cpu[0], batched_total);
  const double batched_server_us = us_per_row(batched_cpu[1], batched_total);
  const double single_client_us = us_per_row(single_cpu[0], single_total);
  const double single_server_us = us_per_row(single_cpu[1], single_total);
  const double batched_cpu_bound =
      1e6 / std::max(batched_client_us, batched_server_us);

  if (flags.json) {
    std::printf(
        "{\"batched_rows_per_s\": %.0f, \"single_rows_per_s\": %.0f, "
        "\"ratio\": %.1f, \"batched_overall_rows_per_s\": %.0f, "
        "\"single_overall_rows_per_s\": %.0f, "
        "\"batched_client_cpu_us_per_row\": %.2f, "
        "\"batched_server_cpu_us_per_row\": %.2f, "
        "\"single_client_cpu_us_per_row\": %.1f, "
        "\"single_server_cpu_us_per_row\": %.1f, "
        "\"batched_cpu_bound_rows_per_s\": %.0f, \"rounds\": %d, "
        "\"batched_rows\": %lld, \"single_rows\": %lld, \"batch_size\": %d, "
        "\"cpu\": \"%s\", \"cores\": %ld, \"kernel\": \"%s %s\", "
        "\"postgres\": \"%s\", \"date\": \"%s\", \"load\": [%.2f, %.2f, "
        "%.2f], \"steal_percent\": %.1f}\n",
        batched_median, single_median, batched_median / single_median,
        batched_overall, single_overall, batched_client_us, batched_server_us,
        single_client_us, single_server_us, batched_cpu_bound, flags.rounds,
        static_cast<long long>(batched_total),
        static_cast<long long>(single_total), flags.batch_size, cpu.c_str(),
        cores, uts.sysname, uts.release, (*cluster)->version().c_str(),
        date.c_str(), load[0], load[1], load[2], steal_percent);
    return 0;
  }
  std::printf(
      "environment: %s, %ld cores; %s %s; %s; %s; load %.2f %.2f %.2f; "
      "CPU stolen by the hypervisor during the run: %.1f %%\n",
      cpu.c_str(), cores, uts.sysname, uts.release,
      (*cluster)->version().c_str(), date.c_str(), load[0], load[1], load[2],
      steal_percent);
  std::printf(
      "rounds: %d (each: %d rows batched by %d, %d rows one per call)\n\n",
      flags.rounds, flags.batched_rows, flags.batch_size, flags.single_rows);
  std::printf(
      "| mode | rows | median rows/s (per round) | overall rows/s | client "
      "CPU µs/row | server CPU µs/row |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
  std::printf(
      "| batched (%d per RecordSamples, one COPY) | %lld | %.0f | %.0f | "
      "%.2f | %.2f |\n",
      flags.batch_size, static_cast<long long>(batched_total), batched_median,
      batched_overall, batched_client_us, batched_server_us);
  std::printf(
      "| one row per RecordSamples | %lld | %.0f | %.0f | %.1f | %.1f |\n",
      static_cast<long long>(single_total), single_median, single_overall,
      single_client_us, single_server_us);
  std::printf("\nratio batched / one-by-one (medians): %.1fx\n",
              batched_median / single_median);
  std::printf(
      "batched, bound by CPU alone (busier side on a core of its own): "
      "%.0f rows/s\n",
      batched_cpu_bound);
  std::printf("target >= 100000 rows/s batched: %s\n",
              batched_median >= 100'000 ? "met" : "MISSED");
  return 0;
}
