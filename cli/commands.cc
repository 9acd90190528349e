// The benchfleet CLI's main commands (run, validate, submit, show, watch,
// list, cancel, agents, drain) and the dispatch to the others (history,
// admin, bundle). A long file (over 700 lines) on purpose: each command's
// output format sits next to its call, and what remains here is that.
#include "cli/commands.h"

#include <grpcpp/create_channel.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "agent/runner/process_runner.h"
#include "agent/service/agent.h"
#include "benchfleet/v1/fleet.grpc.pb.h"
#include "cli/admin_commands.h"
#include "cli/bundle_commands.h"
#include "cli/history_commands.h"
#include "cli/output.h"
#include "common/config_file.h"
#include "common/credentials.h"
#include "common/grpc_status.h"
#include "common/signing.h"
#include "common/spec_loader.h"
#include "controller/controller.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace {

constexpr absl::Duration kUnaryDeadline = absl::Seconds(15);

struct Globals {
  std::string controller = "127.0.0.1:7070";
  bool json = false;
  // TLS and the token (docs/operations.md); plaintext when no --ca.
  TransportOptions transport;
  std::string token_file;
};

int Report(const absl::Status& st, const std::string& controller) {
  return ReportRpcError(st, controller);
}

// An attempt as JSON, its environment an object rather than a string.
nlohmann::json AttemptJson(const v1::Attempt& a) {
  nlohmann::json j = nlohmann::json::parse(ProtoToJson(a));
  j["environment"] =
      a.environment_json().empty()
          ? nlohmann::json::object()
          : nlohmann::json::parse(a.environment_json(), nullptr, false);
  j.erase("environment_json");
  return j;
}

// The experiment as JSON, with its report (and its attempts' environments)
// embedded as objects rather than strings.
nlohmann::json ExperimentJson(const v1::Experiment& e) {
  nlohmann::json j = nlohmann::json::parse(ProtoToJson(e));
  if (!e.report_json().empty()) {
    j["report"] = nlohmann::json::parse(e.report_json(), nullptr, false);
  }
  j.erase("report_json");
  nlohmann::json attempts = nlohmann::json::array();
  for (const v1::Attempt& a : e.attempt_list())
    attempts.push_back(AttemptJson(a));
  j["attempt_list"] = std::move(attempts);
  return j;
}

std::string Gib(int64_t bytes) {
  return absl::StrFormat(
      "%.1f GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
}

// One attempt on one line: its agent, its outcome ("host-not-ready", "lost",
// ...) with the reason, and when it started.
std::string AttemptHeadline(const v1::Attempt& a) {
  std::string out = absl::StrFormat("Attempt %d · agent %s · %s", a.id(),
                                    a.agent_id(), a.state());
  if (!a.reason().empty()) absl::StrAppend(&out, " (", a.reason(), ")");
  if (a.started_at_unix_ms() > 0) {
    absl::StrAppend(
        &out, " · started ",
        absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                         absl::FromUnixMillis(a.started_at_unix_ms()),
                         absl::UTCTimeZone()));
  }
  return out;
}

// `show ID --env`: what one attempt ran on, one readable block.
std::string EnvironmentBlock(const v1::Attempt& a) {
  std::string out = AttemptHeadline(a);
  absl::StrAppend(&out, "\n");
  const nlohmann::json env =
      nlohmann::json::parse(a.environment_json(), nullptr, false);
  if (!env.is_object()) {
    absl::StrAppend(&out, "  (no environment recorded)\n");
    return out;
  }
  auto str = [&](const char* key) {
    auto it = env.find(key);
    return it != env.end() && it->is_string() ? it->get<std::string>()
                                              : std::string();
  };
  auto num = [&](const char* key) -> int64_t {
    auto it = env.find(key);
    return it != env.end() && it->is_number() ? it->get<int64_t>() : 0;
  };
  auto or_unknown = [](const std::string& v) {
    return v.empty() ? std::string("unknown") : v;
  };
  auto line = [&](const std::string& label, const std::string& value) {
    // Continuation lines (several GPUs or tools) leave the label blank.
    absl::StrAppend(
        &out, absl::StrFormat("  %-12s %s\n", label.empty() ? "" : label + ":",
                              value));
  };
  line("Host", str("hostname"));
  line("Fingerprint", or_unknown(str("fingerprint")));
  line("CPU",
       absl::StrCat(or_unknown(str("cpu_model")), " · ", num("cpu_cores"),
                    " cores · governor ", or_unknown(str("governor")),
                    " · turbo ", or_unknown(str("turbo"))));
  line("Memory", Gib(num("memory_bytes")));
  std::vector<std::string> gpus;
  if (auto it = env.find("gpus"); it != env.end() && it->is_array()) {
    for (const auto& g : *it) {
      gpus.push_back(
          absl::StrCat(g.value("name", std::string("?")), " · ",
                       Gib(g.value("memory_total_bytes", int64_t{0})), " · ",
                       g.value("uuid", std::string("no UUID"))));
    }
  }
  if (gpus.empty()) gpus.push_back("none");
  for (size_t i = 0; i < gpus.size(); ++i) line(i == 0 ? "GPUs" : "", gpus[i]);
  line("OS", absl::StrCat(or_unknown(str("os")), " · kernel ",
                          or_unknown(str("kernel"))));
  const std::string commit = str("commit");
  const bool dirty = env.value("dirty", false);
  line("Source", commit.empty()
                     ? std::string("not a git work tree")
                     : absl::StrCat("commit ", commit,
                                    dirty ? " (uncommitted changes)" : ""));
  std::vector<std::string> tools;
  if (auto it = env.find("toolchain"); it != env.end() && it->is_object()) {
    size_t width = 0;
    for (const auto& [name, v] : it->items())
      width = std::max(width, name.size());
    for (const auto& [name, v] : it->items()) {
      tools.push_back(
          absl::StrFormat("%-*s  %s", static_cast<int>(width), name,
                          v.is_string() ? v.get<std::string>() : v.dump()));
    }
  }
  if (tools.empty()) tools.push_back("not recorded");
  for (size_t i = 0; i < tools.size(); ++i)
    line(i == 0 ? "Toolchain" : "", tools[i]);
  line("Seed", or_unknown(str("seed")));
  std::vector<std::string> labels;
  if (auto it = env.find("labels"); it != env.end() && it->is_object()) {
    for (const auto& [k, v] : it->items())
      labels.push_back(absl::StrCat(
          k, "=", v.is_string() ? v.get<std::string>() : v.dump()));
  }
  line("Labels", labels.empty() ? "none" : absl::StrJoin(labels, ","));
  if (!env.value("agent_reported", true)) {
    absl::StrAppend(&out,
                    "  (the agent did not report governor, GPUs, toolchain or "
                    "commit for this attempt)\n");
  }
  return out;
}

class Client {
 public:
  static absl::StatusOr<Client> Dial(const std::string& address,
                                     const TransportOptions& transport) {
    auto creds = MakeChannelCredentials(address, transport);
    if (!creds.ok()) return creds.status();
    auto channel = grpc::CreateCustomChannel(address, *creds,
                                             MakeChannelArguments(transport));
    return Client(v1::FleetService::NewStub(channel));
  }

  template <typename Req, typename Resp, typename Fn>
  absl::Status Call(Fn fn, const Req& req, Resp* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + kUnaryDeadline));
    return FromGrpcStatus(((*stub_).*fn)(&ctx, req, resp));
  }

  v1::FleetService::Stub* stub() { return stub_.get(); }

 private:
  explicit Client(std::unique_ptr<v1::FleetService::Stub> stub)
      : stub_(std::move(stub)) {}
  std::shared_ptr<v1::FleetService::Stub> stub_;
};

std::string Age(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  const absl::Duration d = absl::Now() - absl::FromUnixMillis(unix_ms);
  if (d < absl::Minutes(1))
    return absl::StrCat(absl::ToInt64Seconds(d), "s ago");
  if (d < absl::Hours(1)) return absl::StrCat(absl::ToInt64Minutes(d), "m ago");
  if (d < absl::Hours(48)) return absl::StrCat(absl::ToInt64Hours(d), "h ago");
  return absl::StrCat(absl::ToInt64Hours(d) / 24, "d ago");
}

std::string ProgressLine(const v1::Experiment& e) {
  const v1::Progress& p = e.progress();
  std::string line = absl::StrFormat("experiment %d [%s]", e.id(), e.state());
  if (p.runs_total() > 0)
    absl::StrAppend(
        &line, absl::StrFormat(" %d/%d steps", p.runs_done(), p.runs_total()));
  if (!p.current_step().empty())
    absl::StrAppend(&line, " · ", p.current_step());
  if (!p.hostname().empty()) absl::StrAppend(&line, " · host ", p.hostname());
  return line;
}

bool IsFinal(const std::string& state) {
  return state == "done" || state == "failed" || state == "cancelled";
}

// `list`'s last column: why an experiment is back in the queue (a lost
// attempt, a host that was not ready) or why it ended without a report. A
// running or done experiment may still carry the reason of an earlier
// re-queue, which no longer describes it, so it shows none.
std::string ListNote(const v1::Experiment& e) {
  if (e.state() == "queued" || e.state() == "failed" ||
      e.state() == "cancelled") {
    return e.state_reason();
  }
  return "";
}

// Follows an experiment until it ends; prints progress to stderr, the report to
// stdout.
int Watch(Client& client, int64_t id, const Globals& g) {
  grpc::ClientContext
      ctx;  // no deadline: experiments take as long as they take
  v1::WatchExperimentRequest req;
  req.set_id(id);
  auto reader = client.stub()->WatchExperiment(&ctx, req);
  v1::Experiment e, last;
  const bool tty = isatty(STDERR_FILENO) != 0;
  std::string previous;
  absl::Time last_print = absl::InfinitePast();
  bool got_any = false;
  while (reader->Read(&e)) {
    got_any = true;
    last = e;
    if (g.json) continue;
    const std::string line = ProgressLine(e);
    if (tty) {
      std::fprintf(stderr, "\r\033[K%s", line.c_str());
    } else if (line != previous &&
               (absl::Now() - last_print > absl::Seconds(2) ||
                IsFinal(e.state()))) {
      std::fprintf(stderr, "%s\n", line.c_str());
      last_print = absl::Now();
    }
    previous = line;
  }
  if (tty && !g.json) std::fprintf(stderr, "\n");
  grpc::Status st = reader->Finish();
  if (!st.ok() || !got_any) return Report(FromGrpcStatus(st), g.controller);
  if (g.json) {
    std::cout << ExperimentJson(last).dump(2) << "\n";
  } else if (!last.report_text().empty()) {
    std::cout << last.report_text();
  } else {
    std::cout << absl::StrFormat("Experiment %03d: %s\nState: %s\nReason: %s\n",
                                 last.number(), last.name(), last.state(),
                                 last.state_reason());
  }
  return last.state() == "done" ? kExitOk : kExitUserError;
}

// What submit sends: the spec's text, its directory (the work directory) and,
// with source.bundle, the directory to pack and the files the spec lists.
struct SpecForSubmit {
  std::string text;
  std::string dir;
  std::string bundle_dir;  // "" without source.bundle
  std::vector<std::string> bundle_files;
};

absl::StatusOr<SpecForSubmit> ReadSpecForSubmit(
    const std::string& file, std::vector<std::string>* printed_warnings) {
  SpecLoadOptions opts;
  opts.check_input_files = true;
  absl::StatusOr<ExperimentSpec> spec = LoadSpecFile(file, opts);
  if (!spec.ok()) return spec.status();
  for (const std::string& w : spec->warnings)
    std::fprintf(stderr, "warning: %s\n", w.c_str());
  *printed_warnings = spec->warnings;
  std::error_code ec;
  const std::string dir =
      std::filesystem::absolute(std::filesystem::path(file), ec)
          .parent_path()
          .lexically_normal();
  SpecForSubmit out{spec->source_text, dir, "", spec->source_files};
  if (!spec->source_bundle.empty()) {
    out.bundle_dir = (std::filesystem::path(dir) / spec->source_bundle)
                         .lexically_normal()
                         .string();
  }
  return out;
}

// With source.bundle in the spec, or `force_bundle` (`submit --bundle`): the
// bundle directory (the spec's own with --bundle) is packed with `pack` and
// uploaded first (unless the controller holds it) and the request carries
// its digest.
int Submit(Client& client, const std::string& file, bool watch,
           const Globals& g, const PackOptions& pack, bool force_bundle) {
  std::vector<std::string> printed;
  auto text = ReadSpecForSubmit(file, &printed);
  if (!text.ok()) {
    std::fprintf(stderr, "%s\n", std::string(text.status().message()).c_str());
    return kExitUserError;
  }
  v1::SubmitRequest req;
  if (!text->bundle_dir.empty() || force_bundle) {
    const std::string dir =
        text->bundle_dir.empty() ? text->dir : text->bundle_dir;
    PackOptions files = pack;
    files.files = text->bundle_files;
    absl::StatusOr<BundlePush> push = PushBundle(client.stub(), dir, files);
    if (!push.ok()) return Report(push.status(), g.controller);
    std::fprintf(stderr, "%s\n", DescribePush(*push, dir).c_str());
    req.set_bundle_digest(push->info.digest);
  }
  req.set_spec_yaml(text->text);
  req.set_spec_path(file);
  req.set_workdir(text->dir);
  const char* user = std::getenv("USER");
  req.set_submitted_by(user != nullptr ? user : "");
  v1::SubmitResponse resp;
  absl::Status st = client.Call(&v1::FleetService::Stub::Submit, req, &resp);
  if (!st.ok()) return Report(st, g.controller);
  // The controller's own warnings, such as "DISCARDed before" (history).
  for (const std::string& w : resp.warnings()) {
    if (std::find(printed.begin(), printed.end(), w) == printed.end()) {
      std::fprintf(stderr, "warning: %s\n", w.c_str());
    }
  }
  if (!watch) {
    if (g.json) {
      std::cout << ProtoToJson(resp) << "\n";
    } else {
      std::cout << absl::StrFormat("submitted experiment %d (number %03d)\n",
                                   resp.experiment_id(), resp.number());
    }
    return kExitOk;
  }
  if (!g.json) {
    std::fprintf(stderr, "submitted experiment %ld (number %03ld)\n",
                 static_cast<long>(resp.experiment_id()),
                 static_cast<long>(resp.number()));
  }
  return Watch(client, resp.experiment_id(), g);
}

int RunLocal(const std::string& file, const std::string& store_url,
             const std::string& labels_flag, const Globals& g_in) {
  SpecLoadOptions opts;
  opts.check_input_files = true;
  absl::StatusOr<ExperimentSpec> spec = LoadSpecFile(file, opts);
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", std::string(spec.status().message()).c_str());
    return kExitUserError;
  }
  ControllerOptions copts;
  copts.listen = "127.0.0.1:0";
  copts.store_url =
      store_url.empty()
          ? absl::StrCat("sqlite://", DefaultDataDir(), "/local.db")
          : store_url;
  // Local mode signs its orders too, with a key pair made for this run and
  // removed after it, so that the verifying path is the one always taken.
  std::string key_dir =
      (std::filesystem::temp_directory_path() / "benchfleet-local-XXXXXX")
          .string();
  if (mkdtemp(key_dir.data()) == nullptr) {
    std::fprintf(stderr, "benchfleet: cannot make a temporary directory: %s\n",
                 std::strerror(errno));
    return kExitUserError;
  }
  struct RemoveDir {
    std::string path;
    ~RemoveDir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } remove_key_dir{key_dir};
  if (absl::Status s = GenerateSigningKeyPair(key_dir); !s.ok()) {
    std::fprintf(stderr, "benchfleet: %s\n", std::string(s.message()).c_str());
    return kExitUserError;
  }
  copts.signing_key_file = key_dir + "/signing.key";
  auto controller = Controller::Create(copts);
  if (!controller.ok()) {
    std::fprintf(stderr, "benchfleet: cannot start the local controller: %s\n",
                 std::string(controller.status().message()).c_str());
    return kExitUnreachable;
  }
  AgentOptions aopts;
  aopts.controller = (*controller)->address();
  aopts.controller_public_key_file = key_dir + "/signing.pub";
  aopts.workdir = DefaultDataDir() + "/local-agent";
  aopts.labels =
      spec->required_labels;  // local mode runs here whatever the spec asks for
  if (!labels_flag.empty()) {
    auto parsed = ParseLabels(labels_flag);
    if (!parsed.ok()) {
      std::fprintf(stderr, "benchfleet: %s\n",
                   std::string(parsed.status().message()).c_str());
      return kExitUsage;
    }
    for (const auto& [k, v] : *parsed) aopts.labels[k] = v;
  }
  if (const char* lock = std::getenv("BENCHFLEET_LOCK_FILE"); lock != nullptr)
    aopts.lock_file = lock;
  PosixProcessRunner runner;
  auto agent = Agent::Create(aopts, &runner);
  if (!agent.ok()) {
    std::fprintf(stderr, "benchfleet: %s\n",
                 std::string(agent.status().message()).c_str());
    return kExitUserError;
  }
  std::thread agent_thread([&] { (void)(*agent)->Run(); });
  Globals g = g_in;
  g.controller = (*controller)->address();
  int rc = kExitUnreachable;
  auto client = Client::Dial(g.controller, TransportOptions{});
  if (client.ok())
    rc = Submit(*client, file, /*watch=*/true, g, PackOptions{},
                /*force_bundle=*/false);
  (*agent)->Shutdown();
  agent_thread.join();
  (*controller)->Shutdown();
  return rc;
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{
      "benchfleet: run benchmark experiments and get verdicts you can defend"};
  app.require_subcommand(1);
  Globals g;
  if (const char* env = std::getenv("BENCHFLEET_CONTROLLER");
      env != nullptr && env[0] != '\0') {
    g.controller = env;
  }
  app.add_option("--controller", g.controller, "controller address HOST:PORT")
      ->envname("BENCHFLEET_CONTROLLER");
  app.add_flag("--json", g.json, "machine-readable output");
  app.add_option("--ca", g.transport.ca_file,
                 "CA of the controller's certificate: talk TLS")
      ->envname("BENCHFLEET_CA");
  app.add_option("--token-file", g.token_file,
                 "file holding your API token (chmod 600)")
      ->envname("BENCHFLEET_TOKEN_FILE");
  app.add_option("--server-name", g.transport.server_name,
                 "name the controller's certificate carries, when it differs "
                 "from the host in --controller");
  app.add_flag("--insecure", g.transport.insecure,
               "allow plaintext to a controller that is not on loopback");

  std::string file, store, labels;
  int64_t id = 0;
  bool watch = false;
  int limit = 50;
  std::string host;

  auto* run = app.add_subcommand(
      "run", "local mode: in-process controller + agent + SQLite");
  run->add_option("file", file, "experiment spec (YAML)")->required();
  run->add_option("--store", store,
                  "store URL (default: sqlite in the data directory)");
  run->add_option("--labels", labels, "labels of the local agent, k=v,...");
  auto* validate =
      app.add_subcommand("validate", "check a spec; submits nothing");
  validate->add_option("file", file, "experiment spec (YAML)")->required();
  auto* submit =
      app.add_subcommand("submit", "queue an experiment on the controller");
  submit->add_option("file", file, "experiment spec (YAML)")->required();
  submit->add_flag("--watch", watch, "follow it until it ends");
  bool submit_bundle = false;
  submit->add_flag("--bundle", submit_bundle,
                   "pack the spec's directory and upload it (once per tree) "
                   "so that agents without that directory can run it");
  BundleCommands bundle_cmds;
  submit->add_option("--bundle-max-size", bundle_cmds.max_size_mib,
                     "with --bundle or source.bundle: refuse a bundle larger "
                     "than this many MiB (default 256)");
  auto* show = app.add_subcommand("show", "an experiment's state and report");
  show->add_option("id", id, "experiment id")->required();
  bool show_env = false;
  show->add_flag("--env", show_env,
                 "what each attempt ran on: host, CPU, GPUs, OS, toolchain, "
                 "commit, fingerprint");
  auto* watch_cmd =
      app.add_subcommand("watch", "follow an experiment until it ends");
  watch_cmd->add_option("id", id, "experiment id")->required();
  auto* list = app.add_subcommand("list", "recent experiments");
  list->add_option("--limit", limit, "how many (default 50)");
  auto* cancel =
      app.add_subcommand("cancel", "cancel a queued or running experiment");
  cancel->add_option("id", id, "experiment id")->required();
  auto* agents = app.add_subcommand("agents", "the registered agents");
  auto* drain = app.add_subcommand("drain", "stop giving new work to an agent");
  drain->add_option("host", host, "agent id")->required();
  auto* uncordon =
      app.add_subcommand("uncordon", "let a drained agent take work again");
  uncordon->add_option("host", host, "agent id")->required();
  HistoryCommands history_cmds;
  AddHistoryCommands(app, history_cmds);
  AdminCommands admin_cmds;
  AddAdminCommands(app, admin_cmds);
  AddBundleCommands(app, bundle_cmds);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  spdlog::set_level(spdlog::level::warn);

  if (validate->parsed()) {
    SpecLoadOptions opts;
    opts.check_input_files = true;
    absl::StatusOr<ExperimentSpec> spec = LoadSpecFile(file, opts);
    if (!spec.ok()) {
      std::fprintf(stderr, "%s\n",
                   std::string(spec.status().message()).c_str());
      return kExitUserError;
    }
    for (const std::string& w : spec->warnings)
      std::fprintf(stderr, "warning: %s\n", w.c_str());
    if (g.json) {
      nlohmann::json j = {
          {"valid", true}, {"name", spec->name}, {"warnings", spec->warnings}};
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << absl::StrFormat(
          "%s: valid (%d variants, %d inputs, %d runs each)\n", file,
          spec->variants.size(), spec->inputs.size(), spec->runs);
    }
    return kExitOk;
  }
  if (run->parsed()) return RunLocal(file, store, labels, g);

  if (std::optional<int> rc = RunCertsCommands(admin_cmds)) return *rc;
  if (!g.token_file.empty()) {
    absl::StatusOr<std::string> token = ReadTokenFile(g.token_file);
    if (!token.ok()) {
      std::fprintf(stderr, "benchfleet: %s\n",
                   std::string(token.status().message()).c_str());
      return kExitUsage;
    }
    g.transport.token = *token;
    if (g.transport.ca_file.empty()) {
      std::fprintf(stderr,
                   "benchfleet: --token-file needs --ca (or BENCHFLEET_CA): "
                   "a token is only ever sent over TLS\n");
      return kExitUsage;
    }
  }
  auto client = Client::Dial(g.controller, g.transport);
  if (!client.ok()) {
    std::fprintf(stderr, "benchfleet: %s\n",
                 std::string(client.status().message()).c_str());
    return kExitUsage;
  }
  if (std::optional<int> rc =
          RunTokenCommands(admin_cmds, client->stub(), g.controller, g.json)) {
    return *rc;
  }

  if (submit->parsed()) {
    const PackOptions pack = BundlePackOptions(bundle_cmds);
    return Submit(*client, file, watch, g, pack, submit_bundle);
  }
  if (std::optional<int> rc = RunBundleCommands(bundle_cmds, client->stub(),
                                                g.controller, g.json)) {
    return *rc;
  }
  if (std::optional<int> rc = RunHistoryCommands(history_cmds, client->stub(),
                                                 g.controller, g.json)) {
    return *rc;
  }
  if (watch_cmd->parsed()) return Watch(*client, id, g);
  if (show->parsed()) {
    v1::GetExperimentRequest req;
    req.set_id(id);
    v1::Experiment e;
    absl::Status st =
        client->Call(&v1::FleetService::Stub::GetExperiment, req, &e);
    if (!st.ok()) return Report(st, g.controller);
    if (show_env) {
      if (g.json) {
        nlohmann::json attempts = nlohmann::json::array();
        for (const v1::Attempt& a : e.attempt_list())
          attempts.push_back(AttemptJson(a));
        nlohmann::json j = {{"experiment_id", e.id()},
                            {"name", e.name()},
                            {"attempts", std::move(attempts)}};
        std::cout << j.dump(2, ' ', false,
                            nlohmann::json::error_handler_t::replace)
                  << "\n";
        return kExitOk;
      }
      std::cout << absl::StrFormat("Experiment %d (number %03d): %s\n", e.id(),
                                   e.number(), e.name());
      if (e.attempt_list_size() == 0)
        std::cout << "No attempt yet: it has not been leased to an agent.\n";
      for (const v1::Attempt& a : e.attempt_list())
        std::cout << "\n" << EnvironmentBlock(a);
      return kExitOk;
    }
    if (g.json) {
      std::cout << ExperimentJson(e).dump(2) << "\n";
      return kExitOk;
    }
    std::cout << absl::StrFormat(
        "Experiment %d (number %03d): %s\nState: %s%s\nAttempts: %d\n", e.id(),
        e.number(), e.name(), e.state(),
        e.state_reason().empty() ? "" : " — " + e.state_reason(), e.attempts());
    // Each attempt's outcome: a lost or host-not-ready attempt says why here,
    // even after a later attempt replaced the experiment's state reason.
    for (const v1::Attempt& a : e.attempt_list())
      std::cout << "  " << AttemptHeadline(a) << "\n";
    if (!IsFinal(e.state()) && e.progress().runs_total() > 0) {
      std::cout << "Progress: " << ProgressLine(e) << "\n";
    }
    std::cout << ReportOrSources(e);
    return kExitOk;
  }
  if (list->parsed()) {
    v1::ListExperimentsRequest req;
    req.set_limit(limit);
    v1::ListExperimentsResponse resp;
    absl::Status st =
        client->Call(&v1::FleetService::Stub::ListExperiments, req, &resp);
    if (!st.ok()) return Report(st, g.controller);
    if (g.json) {
      std::cout << ProtoToJson(resp) << "\n";
      return kExitOk;
    }
    std::cout << absl::StrFormat("%-6s %-5s %-28s %-10s %-14s %-9s %s\n", "ID",
                                 "NUM", "NAME", "STATE", "PROGRESS", "UPDATED",
                                 "NOTE");
    for (const v1::Experiment& e : resp.experiments()) {
      std::string progress = e.progress().runs_total() > 0
                                 ? absl::StrCat(e.progress().runs_done(), "/",
                                                e.progress().runs_total())
                                 : "-";
      const std::string line = absl::StrFormat(
          "%-6d %03d   %-28s %-10s %-14s %-9s %s", e.id(), e.number(), e.name(),
          e.state(), progress, Age(e.updated_at_unix_ms()), ListNote(e));
      std::cout << absl::StripTrailingAsciiWhitespace(line) << "\n";
    }
    return kExitOk;
  }
  if (cancel->parsed()) {
    v1::CancelExperimentRequest req;
    req.set_id(id);
    v1::Experiment e;
    absl::Status st =
        client->Call(&v1::FleetService::Stub::CancelExperiment, req, &e);
    if (!st.ok()) return Report(st, g.controller);
    if (g.json) {
      std::cout << ExperimentJson(e).dump(2) << "\n";
    } else {
      std::cout << absl::StrFormat("experiment %d is %s\n", e.id(), e.state());
    }
    return kExitOk;
  }
  if (agents->parsed()) {
    v1::ListAgentsRequest req;
    v1::ListAgentsResponse resp;
    absl::Status st =
        client->Call(&v1::FleetService::Stub::ListAgents, req, &resp);
    if (!st.ok()) return Report(st, g.controller);
    if (g.json) {
      std::cout << ProtoToJson(resp) << "\n";
      return kExitOk;
    }
    std::cout << absl::StrFormat("%-24s %-20s %-12s %-10s %-12s %s\n", "ID",
                                 "HOST", "STATE", "CORDONED", "EXPERIMENT",
                                 "LABELS");
    for (const v1::Agent& a : resp.agents()) {
      std::vector<std::string> l;
      for (const auto& [k, v] : a.labels())
        l.push_back(absl::StrCat(k, "=", v));
      std::sort(l.begin(), l.end());
      std::cout << absl::StrFormat("%-24s %-20s %-12s %-10s %-12s %s\n", a.id(),
                                   a.hostname(), a.state(),
                                   a.cordoned() ? "yes" : "no",
                                   a.current_experiment_id() > 0
                                       ? absl::StrCat(a.current_experiment_id())
                                       : "-",
                                   absl::StrJoin(l, ","));
    }
    return kExitOk;
  }
  if (drain->parsed() || uncordon->parsed()) {
    v1::SetAgentCordonedRequest req;
    req.set_id(host);
    req.set_cordoned(drain->parsed());
    v1::Agent a;
    absl::Status st =
        client->Call(&v1::FleetService::Stub::SetAgentCordoned, req, &a);
    if (!st.ok()) return Report(st, g.controller);
    if (g.json) {
      std::cout << ProtoToJson(a) << "\n";
    } else {
      std::cout << absl::StrFormat(
          "agent %s %s\n", a.id(),
          a.cordoned() ? "drained: it finishes its current experiment "
                         "and takes no new work"
                       : "uncordoned: it takes work again");
    }
    return kExitOk;
  }
  return kExitUsage;
}

}  // namespace benchfleet
