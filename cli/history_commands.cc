#include "cli/history_commands.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "common/grpc_status.h"
#include "controller/history/history_file.h"
#include "controller/report/report.h"
#include "nlohmann/json.hpp"

namespace benchfleet {
namespace {

// History calls read or write many experiments in one transaction.
constexpr absl::Duration kHistoryDeadline = absl::Minutes(2);

int Fail(const absl::Status& st, const std::string& controller) {
  return ReportRpcError(st, controller);
}

template <typename Req, typename Resp, typename Fn>
absl::Status Call(v1::FleetService::Stub* stub, Fn fn, const Req& req,
                  Resp* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kHistoryDeadline));
  return FromGrpcStatus((stub->*fn)(&ctx, req, resp));
}

MetricUnit UnitOf(const std::string& unit) {
  if (unit == "ns") return MetricUnit::kNanoseconds;
  if (unit == "bytes") return MetricUnit::kBytes;
  return MetricUnit::kPlain;
}

std::string Short(const std::string& text, size_t n) {
  return text.size() > n ? text.substr(0, n) : text;
}

std::string Rfc3339(int64_t unix_ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string Number(double v) { return absl::StrFormat("%.17g", v); }

int History(const HistoryCommands& cmds, v1::FleetService::Stub* stub,
            const std::string& controller, bool json) {
  v1::GetHistoryRequest req;
  req.set_name(cmds.benchmark);
  req.set_input(cmds.input);
  req.set_host(cmds.host);
  if (!cmds.since.empty()) {
    absl::StatusOr<absl::Time> since = ParseSince(cmds.since, absl::Now());
    if (!since.ok()) {
      std::fprintf(stderr, "benchfleet history: %s\n",
                   std::string(since.status().message()).c_str());
      return kExitUsage;
    }
    req.set_since_unix_ms(absl::ToUnixMillis(*since));
  }
  v1::GetHistoryResponse resp;
  absl::Status st = Call(stub, &v1::FleetService::Stub::GetHistory, req, &resp);
  if (!st.ok()) return Fail(st, controller);
  if (json) {
    std::cout << HistoryJson(resp);
  } else if (cmds.csv) {
    std::cout << HistoryCsv(resp);
  } else if (resp.rows().empty()) {
    std::fprintf(stderr,
                 "no completed experiments named %s%s; `benchfleet list` "
                 "shows what ran\n",
                 cmds.benchmark.c_str(),
                 cmds.input.empty() && cmds.host.empty() && cmds.since.empty()
                     ? ""
                     : " match the filters");
  } else {
    std::cout << HistoryTable(resp);
  }
  return kExitOk;
}

int ExportHistory(const HistoryCommands& cmds, v1::FleetService::Stub* stub,
                  const std::string& controller, bool json) {
  v1::ExportHistoryRequest req;
  req.set_name(cmds.benchmark);
  if (!cmds.since.empty()) {
    absl::StatusOr<absl::Time> since = ParseSince(cmds.since, absl::Now());
    if (!since.ok()) {
      std::fprintf(stderr, "benchfleet export-history: %s\n",
                   std::string(since.status().message()).c_str());
      return kExitUsage;
    }
    req.set_since_unix_ms(absl::ToUnixMillis(*since));
  }
  v1::ExportHistoryResponse resp;
  absl::Status st =
      Call(stub, &v1::FleetService::Stub::ExportHistory, req, &resp);
  if (!st.ok()) return Fail(st, controller);
  // Written beside the target and renamed over it, so that a failed export
  // never leaves half a file.
  const std::string tmp = cmds.file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << resp.file_text();
    out.close();
    if (!out) {
      std::fprintf(stderr,
                   "benchfleet export-history: cannot write %s; check that "
                   "its directory exists and is writable\n",
                   tmp.c_str());
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      return kExitUserError;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, cmds.file, ec);
  if (ec) {
    std::fprintf(stderr,
                 "benchfleet export-history: cannot rename %s to %s: %s\n",
                 tmp.c_str(), cmds.file.c_str(), ec.message().c_str());
    std::filesystem::remove(tmp, ec);
    return kExitUserError;
  }
  if (json) {
    std::cout << nlohmann::json{{"file", cmds.file},
                                {"experiments", resp.experiments()}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << absl::StrFormat("exported %d experiment(s) to %s\n",
                                 resp.experiments(), cmds.file);
  }
  return kExitOk;
}

int ImportHistory(const HistoryCommands& cmds, v1::FleetService::Stub* stub,
                  const std::string& controller, bool json) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(cmds.file, ec);
  if (ec) {
    std::fprintf(stderr, "benchfleet import-history: cannot read %s: %s\n",
                 cmds.file.c_str(), ec.message().c_str());
    return kExitUserError;
  }
  if (size > kMaxHistoryFileBytes) {
    std::fprintf(stderr,
                 "benchfleet import-history: %s is %ju bytes; a history file "
                 "may be at most %zu bytes: export it in parts (--benchmark, "
                 "--since)\n",
                 cmds.file.c_str(), size, kMaxHistoryFileBytes);
    return kExitUserError;
  }
  std::ifstream in(cmds.file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) {
    std::fprintf(stderr, "benchfleet import-history: cannot read %s\n",
                 cmds.file.c_str());
    return kExitUserError;
  }
  v1::ImportHistoryRequest req;
  req.set_file_text(text.str());
  req.set_file_name(cmds.file);
  v1::ImportHistoryResponse resp;
  absl::Status st =
      Call(stub, &v1::FleetService::Stub::ImportHistory, req, &resp);
  if (!st.ok()) return Fail(st, controller);
  if (json) {
    std::cout << nlohmann::json{{"imported", resp.imported()},
                                {"already_present", resp.already_present()}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << absl::StrFormat(
        "imported %d experiment(s) from %s; %d already present\n",
        resp.imported(), cmds.file, resp.already_present());
  }
  return kExitOk;
}

}  // namespace

void AddHistoryCommands(CLI::App& app, HistoryCommands& cmds) {
  const std::string since_help =
      "only experiments created since: 30d, 12h, 2w, 2026-03-01 or an RFC "
      "3339 time";
  cmds.history = app.add_subcommand(
      "history",
      "a benchmark's baseline and candidate medians across experiments");
  cmds.history->add_option("--benchmark", cmds.benchmark, "experiment name")
      ->required();
  cmds.history->add_option("--input", cmds.input, "only this input");
  cmds.history->add_option("--host", cmds.host,
                           "only this hostname or host fingerprint");
  cmds.history->add_option("--since", cmds.since, since_help);
  cmds.history->add_flag("--csv", cmds.csv, "comma-separated values");
  cmds.export_history = app.add_subcommand(
      "export-history", "write completed experiments to a history file");
  cmds.export_history->add_option("file", cmds.file, "history file (YAML)")
      ->required();
  cmds.export_history->add_option("--benchmark", cmds.benchmark,
                                  "only this experiment name");
  cmds.export_history->add_option("--since", cmds.since, since_help);
  cmds.import_history = app.add_subcommand(
      "import-history", "read a history file into the controller's store");
  cmds.import_history->add_option("file", cmds.file, "history file (YAML)")
      ->required();
}

std::optional<int> RunHistoryCommands(const HistoryCommands& cmds,
                                      v1::FleetService::Stub* stub,
                                      const std::string& controller,
                                      bool json) {
  if (cmds.history != nullptr && cmds.history->parsed()) {
    return History(cmds, stub, controller, json);
  }
  if (cmds.export_history != nullptr && cmds.export_history->parsed()) {
    return ExportHistory(cmds, stub, controller, json);
  }
  if (cmds.import_history != nullptr && cmds.import_history->parsed()) {
    return ImportHistory(cmds, stub, controller, json);
  }
  return std::nullopt;
}

absl::StatusOr<absl::Time> ParseSince(const std::string& text, absl::Time now) {
  if (text.size() >= 2) {
    int64_t count = 0;
    const char unit = text.back();
    if (absl::SimpleAtoi(text.substr(0, text.size() - 1), &count) &&
        count >= 0 && count <= 100000) {
      switch (unit) {
        case 'm':
          return now - absl::Minutes(count);
        case 'h':
          return now - absl::Hours(count);
        case 'd':
          return now - absl::Hours(24 * count);
        case 'w':
          return now - absl::Hours(24 * 7 * count);
        default:
          break;
      }
    }
  }
  absl::Time t;
  std::string error;
  if (absl::ParseTime("%Y-%m-%d", text, absl::UTCTimeZone(), &t, &error) ||
      absl::ParseTime(absl::RFC3339_full, text, &t, &error)) {
    return t;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--since \"", text,
      "\" is not a time: give an age (90m, 12h, 30d, 2w), a date "
      "(2026-03-01, UTC) or an RFC 3339 time (2026-03-01T12:00:00Z)"));
}

std::string HistoryTable(const v1::GetHistoryResponse& history) {
  std::vector<std::vector<std::string>> cells = {
      {"date", "exp", "variant", "input", "median", "change", "verdict",
       "commit", "fingerprint", "host"}};
  for (const v1::HistoryRow& r : history.rows()) {
    cells.push_back({
        absl::FormatTime("%Y-%m-%d %H:%M",
                         absl::FromUnixMillis(r.time_unix_ms()),
                         absl::UTCTimeZone()),
        absl::StrFormat("%03d %s", r.experiment_number(), r.experiment()),
        r.variant(),
        r.input(),
        FormatValue(r.median(), UnitOf(r.unit())),
        r.baseline() ? "-" : FormatPercent(r.change()),
        r.baseline() ? "baseline" : r.verdict(),
        r.commit().empty() ? "-" : Short(r.commit(), 10),
        r.fingerprint().empty() ? "-" : Short(r.fingerprint(), 12),
        r.hostname().empty() ? "-" : r.hostname(),
    });
  }
  std::vector<size_t> width(cells[0].size(), 0);
  for (const auto& row : cells) {
    for (size_t i = 0; i < row.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  // Right-aligned numbers: median and change.
  const auto right = [](size_t i) { return i == 4 || i == 5; };
  std::string out;
  for (const auto& row : cells) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) line += "  ";
      const std::string pad(width[i] - row[i].size(), ' ');
      line += right(i) ? pad + row[i] : row[i] + pad;
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string HistoryCsv(const v1::GetHistoryResponse& history) {
  std::string out =
      "time,experiment_number,experiment,campaign,variant,baseline,input,"
      "median,unit,n,cv,change,verdict,commit,fingerprint,hostname\n";
  for (const v1::HistoryRow& r : history.rows()) {
    const std::vector<std::string> fields = {
        Rfc3339(r.time_unix_ms()),
        absl::StrCat(r.experiment_number()),
        CsvField(r.experiment()),
        CsvField(r.campaign()),
        CsvField(r.variant()),
        r.baseline() ? "true" : "false",
        CsvField(r.input()),
        Number(r.median()),
        CsvField(r.unit()),
        absl::StrCat(r.n()),
        Number(r.cv()),
        r.baseline() ? "" : Number(r.change()),
        CsvField(r.verdict()),
        CsvField(r.commit()),
        CsvField(r.fingerprint()),
        CsvField(r.hostname()),
    };
    out += absl::StrJoin(fields, ",") + "\n";
  }
  return out;
}

std::string HistoryJson(const v1::GetHistoryResponse& history) {
  nlohmann::json rows = nlohmann::json::array();
  for (const v1::HistoryRow& r : history.rows()) {
    nlohmann::json j = {{"time", Rfc3339(r.time_unix_ms())},
                        {"experiment_id", r.experiment_id()},
                        {"experiment_number", r.experiment_number()},
                        {"experiment", r.experiment()},
                        {"campaign", r.campaign()},
                        {"variant", r.variant()},
                        {"baseline", r.baseline()},
                        {"input", r.input()},
                        {"metric", r.metric()},
                        {"unit", r.unit()},
                        {"median", r.median()},
                        {"n", r.n()},
                        {"cv", r.cv()},
                        {"commit", r.commit()},
                        {"fingerprint", r.fingerprint()},
                        {"hostname", r.hostname()}};
    if (!r.baseline()) {
      j["change"] = r.change();
      j["verdict"] = r.verdict();
      j["input_verdict"] = r.input_verdict();
    }
    rows.push_back(std::move(j));
  }
  return nlohmann::json{{"rows", std::move(rows)}}.dump(2) + "\n";
}

}  // namespace benchfleet
