// bf-timing-bench: measures a program with a raw posix_spawn+wait4 loop and/or
// with the agent's PosixProcessRunner, and turns the per-run samples (plus
// hyperfine JSON exports) into the markdown tables of
// docs/perf/agent-timing.md. Driven by bench/agent_timing.sh.
//
//   bf-timing-bench raw|runner|paired --runs N [--warmup W] [--out FILE]
//                   -- PROGRAM [ARGS...]
//     Runs PROGRAM W times unrecorded, then N times, with the raw loop, the
//     runner, or both back to back per run ("paired", alternating which goes
//     first, so both see the same machine state). With --out, appends one line
//     per run to FILE: "raw_ns" (raw), "wall_ns call_ns" (runner) or
//     "raw_ns wall_ns call_ns" (paired), where wall_ns is what the runner
//     reports and call_ns is the whole Run() call. Without --out, prints a
//     summary.
//   bf-timing-bench report --title TEXT (--paired FILE | --raw FILE --runner
//                   FILE) [--hyperfine JSON]... [--target-ratio R]
//                   [--target-stddev-vs-hyperfine 1]
//     Prints a markdown table (median, mean, stddev, CV, MAD, min, median / raw
//     per tool) and one line per requested target check.
//
// Single-threaded; a tool, so it reports errors on stderr and exits non-zero.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/runner/process_runner.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace benchfleet {
namespace {

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "bf-timing-bench: " << message << "\n";
  std::exit(2);
}

struct Args {
  std::string mode;
  int runs = 100;
  int warmup = 10;
  std::string out;
  std::vector<std::string> program;  // after "--"
  std::string title;
  std::string raw_file, runner_file, paired_file;
  std::vector<std::string> hyperfine_files;
  double target_ratio = 0;  // check: agent median / raw median < this
  bool target_stddev_vs_hyperfine = false;  // check: agent stddev <= hyperfine
};

Args Parse(int argc, char** argv) {
  if (argc < 2) {
    Die("usage: bf-timing-bench raw|runner|paired --runs N [--warmup W] "
        "[--out FILE] -- PROGRAM...\n"
        "       bf-timing-bench report --title T (--paired FILE | --raw FILE "
        "--runner FILE) [--hyperfine JSON]... [--target-ratio R] "
        "[--target-stddev-vs-hyperfine 1]");
  }
  Args a;
  a.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--") {
      for (++i; i < argc; ++i) a.program.push_back(argv[i]);
      break;
    }
    if (i + 1 >= argc) Die("missing value for " + flag);
    const std::string value = argv[++i];
    if (flag == "--runs") {
      a.runs = std::stoi(value);
    } else if (flag == "--warmup") {
      a.warmup = std::stoi(value);
    } else if (flag == "--out") {
      a.out = value;
    } else if (flag == "--title") {
      a.title = value;
    } else if (flag == "--raw") {
      a.raw_file = value;
    } else if (flag == "--runner") {
      a.runner_file = value;
    } else if (flag == "--paired") {
      a.paired_file = value;
    } else if (flag == "--hyperfine") {
      a.hyperfine_files.push_back(value);
    } else if (flag == "--target-ratio") {
      a.target_ratio = std::stod(value);
    } else if (flag == "--target-stddev-vs-hyperfine") {
      a.target_stddev_vs_hyperfine = value == "1" || value == "true";
    } else {
      Die("unknown flag " + flag);
    }
  }
  return a;
}

struct Stats {
  size_t n = 0;
  double median = 0, mean = 0, stddev = 0, min = 0;
  double mad = 0;  // median absolute deviation: dispersion that bursts of
                   // load on the host barely move, unlike stddev
};

Stats Summarize(std::vector<double> v) {
  Stats s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  s.median = v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
  s.min = v.front();
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.stddev =
      v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0;
  for (double& x : v) x = std::abs(x - s.median);
  std::sort(v.begin(), v.end());
  s.mad = v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
  return s;
}

// One raw run: exactly what a minimal harness does, nothing more.
int64_t RawOnce(const std::vector<char*>& argv) {
  const int64_t start = MonotonicNs();
  pid_t pid;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
    Die(absl::StrCat("posix_spawn ", argv[0], " failed"));
  }
  int status;
  rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0) {
    if (errno != EINTR) Die("wait4 failed");
  }
  const int64_t end = MonotonicNs();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Die("program failed");
  return end - start;
}

int Measure(const Args& a) {
  if (a.program.empty()) Die("no program after --");
  const bool paired = a.mode == "paired";
  std::vector<char*> argv;
  for (const std::string& s : a.program) {
    argv.push_back(const_cast<char*>(s.c_str()));
  }
  argv.push_back(nullptr);

  PosixProcessRunner runner;
  RunRequest request;
  request.argv = a.program;
  for (char** e = environ; *e != nullptr; ++e) request.env.emplace_back(*e);
  // Returns {wall_ns as the runner reports it, the whole Run() call}.
  auto runner_once = [&]() -> std::pair<int64_t, int64_t> {
    const int64_t start = MonotonicNs();
    absl::StatusOr<RunResult> r = runner.Run(request);
    const int64_t call = MonotonicNs() - start;
    if (!r.ok()) Die(r.status().ToString());
    if (r->exit_code != 0) Die("program failed");
    return {r->wall_ns, call};
  };

  // Per run: raw ns, runner wall ns, runner call ns (-1 where not measured).
  std::vector<std::array<int64_t, 3>> rows;
  rows.reserve(static_cast<size_t>(std::max(0, a.runs)));
  for (int i = -a.warmup; i < a.runs; ++i) {
    std::array<int64_t, 3> row = {-1, -1, -1};
    const bool raw_first = !paired || i % 2 == 0;
    if (a.mode == "raw" || (paired && raw_first)) row[0] = RawOnce(argv);
    if (a.mode == "runner" || paired) {
      const auto [wall, call] = runner_once();
      row[1] = wall;
      row[2] = call;
    }
    if (paired && !raw_first) row[0] = RawOnce(argv);
    if (i >= 0) rows.push_back(row);
  }

  if (!a.out.empty()) {
    std::ofstream out(a.out, std::ios::app);
    for (const auto& row : rows) {
      if (a.mode == "raw") out << row[0] << '\n';
      if (a.mode == "runner") out << row[1] << ' ' << row[2] << '\n';
      if (paired) out << row[0] << ' ' << row[1] << ' ' << row[2] << '\n';
    }
    if (!out) Die("cannot write " + a.out);
    return 0;
  }
  const char* names[3] = {"raw", "runner wall", "runner call"};
  for (int col = 0; col < 3; ++col) {
    std::vector<double> v;
    for (const auto& row : rows) {
      if (row[col] >= 0) v.push_back(static_cast<double>(row[col]));
    }
    if (v.empty()) continue;
    const Stats s = Summarize(v);
    std::cout << absl::StrFormat(
        "%-12s n=%d median=%.0f ns mean=%.0f ns stddev=%.0f ns\n", names[col],
        s.n, s.median, s.mean, s.stddev);
  }
  return 0;
}

// Column `column` (0-based) of a whitespace-separated numeric file.
std::vector<double> ReadColumn(const std::string& path, int column) {
  std::ifstream in(path);
  if (!in) Die("cannot read " + path);
  std::vector<double> v;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    double x = 0;
    for (int i = 0; i <= column; ++i) fields >> x;
    if (fields) v.push_back(x);
  }
  return v;
}

std::vector<double> ReadHyperfine(const std::vector<std::string>& paths) {
  std::vector<double> v;
  for (const std::string& path : paths) {
    std::ifstream in(path);
    if (!in) Die("cannot read " + path);
    const nlohmann::json j = nlohmann::json::parse(in);
    for (const auto& t : j.at("results").at(0).at("times")) {
      v.push_back(t.get<double>() * 1e9);
    }
  }
  return v;
}

int Report(const Args& a) {
  // A paired file has "raw wall call" per line; separate files have "raw" and
  // "wall call".
  const bool paired = !a.paired_file.empty();
  const std::string& raw_file = paired ? a.paired_file : a.raw_file;
  const std::string& runner_file = paired ? a.paired_file : a.runner_file;
  const int wall_col = paired ? 1 : 0;
  if (raw_file.empty() || runner_file.empty()) {
    Die("report needs --paired or both --raw and --runner");
  }

  const Stats raw = Summarize(ReadColumn(raw_file, 0));
  const Stats agent = Summarize(ReadColumn(runner_file, wall_col));
  const Stats call = Summarize(ReadColumn(runner_file, wall_col + 1));
  Stats hyperfine;
  struct Row {
    const char* tool;
    const Stats* s;
  };
  std::vector<Row> rows = {{"raw posix_spawn+wait4", &raw}};
  if (!a.hyperfine_files.empty()) {
    hyperfine = Summarize(ReadHyperfine(a.hyperfine_files));
    rows.push_back({"hyperfine -N", &hyperfine});
  }
  rows.push_back({"agent: PosixProcessRunner wall_ns", &agent});
  rows.push_back({"agent: whole Run() call", &call});

  const bool ms = raw.median >= 10e6;
  const double scale = ms ? 1e6 : 1e3;
  const int digits = ms ? 3 : 1;
  const char* unit = ms ? "ms" : "µs";
  std::cout << "#### " << a.title << "\n\n";
  std::cout << absl::StrFormat(
      "| tool | runs | median (%s) | mean (%s) | stddev (%s) | CV | MAD (%s) "
      "| min (%s) | median / raw |\n",
      unit, unit, unit, unit, unit);
  std::cout << "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const Row& r : rows) {
    const Stats& s = *r.s;
    std::cout << absl::StrFormat(
        "| %s | %d | %.*f | %.*f | %.*f | %.1f %% | %.*f | %.*f | %.3f |\n",
        r.tool, s.n, digits, s.median / scale, digits, s.mean / scale, digits,
        s.stddev / scale, s.mean > 0 ? 100 * s.stddev / s.mean : 0, digits,
        s.mad / scale, digits, s.min / scale,
        raw.median > 0 ? s.median / raw.median : 0);
  }
  std::cout << "\n";

  if (a.target_ratio > 0) {
    const double ratio = agent.median / raw.median;
    std::cout << absl::StrFormat(
        "Target: agent median / raw median = %.3f (agent adds %+.1f %%), "
        "target < %.2f: **%s**\n\n",
        ratio, 100 * (ratio - 1), a.target_ratio,
        ratio < a.target_ratio ? "met" : "missed");
  }
  if (a.target_stddev_vs_hyperfine && !a.hyperfine_files.empty()) {
    std::cout << absl::StrFormat(
        "Target: agent stddev %.3f ms vs hyperfine -N stddev %.3f ms, agent no "
        "worse: **%s**\n\n",
        agent.stddev / 1e6, hyperfine.stddev / 1e6,
        agent.stddev <= hyperfine.stddev ? "met" : "missed");
  }
  return 0;
}

}  // namespace
}  // namespace benchfleet

int main(int argc, char** argv) {
  const benchfleet::Args args = benchfleet::Parse(argc, argv);
  if (args.mode == "raw" || args.mode == "runner" || args.mode == "paired") {
    return benchfleet::Measure(args);
  }
  if (args.mode == "report") return benchfleet::Report(args);
  benchfleet::Die("unknown mode " + args.mode);
}
