// History rows (controller/history/history.h) and the history file
// (controller/history/history_file.h): rows from real report JSON, the exact
// export -> import -> export round trip through a real SQLite store, and the
// reader's refusals (file:line:column, alias bombs, nothing imported).
#include "controller/history/history.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "controller/history/history_file.h"
#include "controller/report/report.h"
#include "controller/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/temp_dir.h"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixMicros(1'700'000'000'123'456);

// A report with a baseline and two candidates over two inputs.
std::string ReportJson(double base_median) {
  ExperimentReport r;
  r.number = 4;
  r.name = "mpt";
  r.metric = "wall_time";
  r.baseline = "baseline";
  for (const std::string variant : {"fast", "slow"}) {
    CandidateReport c;
    c.variant = variant;
    c.verdict = variant == "fast" ? "KEEP" : "DISCARD";
    for (const std::string input : {"light", "heavy"}) {
      InputRow row;
      row.input = input;
      row.n_baseline = 10;
      row.n_candidate = 12;
      row.baseline_median = base_median * (input == "heavy" ? 10 : 1);
      row.candidate_median =
          row.baseline_median * (variant == "fast" ? 0.8 : 1.1);
      row.baseline_cv = 0.01;
      row.candidate_cv = 0.02;
      row.change = variant == "fast" ? -0.2 : 0.1;
      row.verdict = variant == "fast" ? "faster" : "slower";
      c.inputs.push_back(row);
    }
    r.candidates.push_back(c);
  }
  return ReportToJson(r);
}

HistoryEntry MakeEntry(const std::string& env_json) {
  HistoryEntry e;
  e.experiment.id = 9;
  e.experiment.number = 4;
  e.experiment.name = "mpt";
  e.experiment.campaign = "q1";
  e.experiment.state = ExperimentState::kDone;
  e.experiment.report_json = ReportJson(1e6);
  e.attempt.started_at = kT0;
  e.attempt.lease_token = "tok";
  e.attempt.environment_json = env_json;
  VerdictRecord keep;
  keep.variant = "fast";
  keep.verdict = "KEEP";
  VerdictRecord discard;
  discard.variant = "slow";
  discard.verdict = "DISCARD";
  e.verdicts = {keep, discard};
  return e;
}

TEST(HistoryRowsTest, OneRowPerInputAndVariantWithBaselineFirst) {
  const HistoryEntry entry = MakeEntry(
      R"({"hostname": "box", "fingerprint": "abcdef0123", "commit": "c0ffee"})");
  auto rows = BuildHistoryRows({entry});
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 6u);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"light", "baseline"}, {"light", "fast"}, {"light", "slow"},
      {"heavy", "baseline"}, {"heavy", "fast"}, {"heavy", "slow"}};
  for (size_t i = 0; i < rows->size(); ++i) {
    const HistoryRow& row = (*rows)[i];
    SCOPED_TRACE("row " + std::to_string(i));
    EXPECT_EQ(row.input, expected[i].first);
    EXPECT_EQ(row.variant, expected[i].second);
    EXPECT_EQ(row.baseline, expected[i].second == "baseline");
    EXPECT_EQ(row.experiment_number, 4);
    EXPECT_EQ(row.experiment_name, "mpt");
    EXPECT_EQ(row.campaign, "q1");
    EXPECT_EQ(row.time, kT0);
    EXPECT_EQ(row.hostname, "box");
    EXPECT_EQ(row.fingerprint, "abcdef0123");
    EXPECT_EQ(row.commit, "c0ffee");
    EXPECT_EQ(row.unit, "ns");
  }
  const HistoryRow& base = (*rows)[3];
  EXPECT_DOUBLE_EQ(base.median, 1e7);
  EXPECT_EQ(base.n, 10);
  EXPECT_DOUBLE_EQ(base.cv, 0.01);
  EXPECT_EQ(base.verdict, "");
  const HistoryRow& slow = (*rows)[5];
  EXPECT_DOUBLE_EQ(slow.median, 1.1e7);
  EXPECT_EQ(slow.n, 12);
  EXPECT_DOUBLE_EQ(slow.change, 0.1);
  EXPECT_EQ(slow.verdict, "DISCARD");
  EXPECT_EQ(slow.input_verdict, "slower");
}

TEST(HistoryRowsTest, FiltersByInputAndByHostnameOrFingerprint) {
  const HistoryEntry a =
      MakeEntry(R"({"hostname": "box", "fingerprint": "abcdef0123"})");
  HistoryEntry b = MakeEntry(R"({"hostname": "other"})");
  b.experiment.number = 5;
  HistoryRowFilter input;
  input.input = "heavy";
  auto rows = BuildHistoryRows({a, b}, input);
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->size(), 6u);
  for (const HistoryRow& r : *rows) EXPECT_EQ(r.input, "heavy");
  for (const std::string host : {"box", "abcdef0123", "abcdef"}) {
    HistoryRowFilter f;
    f.host = host;
    auto only_a = BuildHistoryRows({a, b}, f);
    ASSERT_TRUE(only_a.ok());
    ASSERT_EQ(only_a->size(), 6u) << host;
    EXPECT_EQ((*only_a)[0].experiment_number, 4);
  }
  HistoryRowFilter too_short;
  too_short.host = "abc";  // a fingerprint prefix needs 6 characters
  auto none = BuildHistoryRows({a, b}, too_short);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(HistoryRowsTest, MissingEnvironmentKeysAreEmptyAndCommitMayBePerVariant) {
  auto rows = BuildHistoryRows({MakeEntry("not json")});
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].hostname, "");
  EXPECT_EQ((*rows)[0].commit, "");
  auto per_variant = BuildHistoryRows(
      {MakeEntry(R"({"commit": {"baseline": "b1", "fast": "f1"}})")});
  ASSERT_TRUE(per_variant.ok());
  EXPECT_EQ((*per_variant)[0].commit, "b1");
  EXPECT_EQ((*per_variant)[1].commit, "f1");
  EXPECT_EQ((*per_variant)[2].commit, "");
}

TEST(HistoryRowsTest, ReportThatIsNotReportJsonIsDataLossNamingTheExperiment) {
  HistoryEntry e = MakeEntry("{}");
  e.experiment.report_json = "[1, 2]";
  auto rows = BuildHistoryRows({e});
  EXPECT_EQ(rows.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(rows.status().message(), HasSubstr("experiment 4 (mpt"));
}

TEST(DiscardedBeforeTest, NamesTheNewestDiscardOfTheIdeaOrOfEachVariant) {
  std::vector<HistoryEntry> history;
  for (int i = 1; i <= 3; ++i) {
    HistoryEntry e = MakeEntry("{}");
    e.experiment.number = i;
    e.experiment.idea = i == 3 ? "other" : "cache";
    e.attempt.ended_at = absl::FromUnixSeconds(1'700'000'000 + i * 86400);
    e.verdicts[1].change = 0.01 * i;
    e.verdicts[1].reason = "reason " + std::to_string(i);
    history.push_back(e);
  }
  // By idea: the newest experiment with that idea and any DISCARD.
  EXPECT_THAT(DiscardedBefore(history, "cache", {"fast", "slow"}),
              ::testing::ElementsAre(
                  "idea \"cache\" was DISCARDed before: experiment 002 mpt "
                  "(campaign q1) on 2023-11-16: slow +2.0% (reason 2)"));
  EXPECT_TRUE(DiscardedBefore(history, "never", {"slow"}).empty());
  // By variant: only candidates that were DISCARDed ("fast" was KEPT).
  EXPECT_THAT(
      DiscardedBefore(history, "", {"fast", "slow", "new"}),
      ::testing::ElementsAre(
          "variant \"slow\" of mpt was DISCARDed before: experiment "
          "003 mpt (campaign q1) on 2023-11-17: slow +3.0% (reason 3)"));
  EXPECT_TRUE(DiscardedBefore({}, "", {"slow"}).empty());
}

// ---- The history file, through real SQLite stores ----

class HistoryFileTest : public ::testing::Test {
 protected:
  std::unique_ptr<SqliteStore> Open(const std::string& name) {
    SqliteOptions options;
    options.path = dir_ / name;
    auto store = SqliteStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  // Runs one experiment through `store` to completion.
  void Complete(Store& store, const std::string& name, const std::string& text,
                absl::Time created, double change) {
    ExperimentRecord in;
    in.name = name;
    in.campaign = text;
    in.idea = text;
    in.spec_yaml = "name: " + name + "\n  # " + text + "\n";
    in.spec_path = text;
    in.workdir = "/w/" + text;
    // Labels are stored as JSON, so they must be UTF-8.
    in.required_labels = {{"gpu", "h100"}, {"k\"ey", "v: \n\xc3\xa9"}};
    in.submitted_by = text;
    in.discarded_before = text;
    in.created_at = created;
    auto e = store.CreateExperiment(in);
    ASSERT_TRUE(e.ok()) << e.status();
    auto claim = store.ClaimNextExperiment(
        text.empty() ? "a" : text, in.required_labels, "tok-" + name,
        ~uint64_t{0}, {}, created + absl::Microseconds(1));
    ASSERT_TRUE(claim.ok() && claim->has_value());
    nlohmann::json env;
    env["hostname"] = "box";
    env["fingerprint"] = "f00d";
    env["commit"] = "c0ffee";
    ASSERT_TRUE(
        store.SetAttemptEnvironment((*claim)->attempt.id, env.dump()).ok());
    VerdictRecord v;
    v.variant = "fast";
    v.verdict = "DISCARD";
    v.reason = "slower: " + text;
    v.change = change;
    v.detail_json = text;
    const absl::Status completed = store.CompleteExperiment(
        (*claim)->attempt.id, "tok-" + name, ReportJson(1234.5678),
        text + "\n\n", {v}, created + absl::Seconds(61));
    ASSERT_TRUE(completed.ok()) << completed;
  }

  std::string Export(Store& store) {
    auto entries = store.ListHistory({});
    EXPECT_TRUE(entries.ok()) << entries.status();
    return entries.ok() ? WriteHistoryFile(*entries) : "";
  }

  testing::TempDir dir_;
};

TEST_F(HistoryFileTest, ExportImportExportIsByteIdentical) {
  auto source = Open("source.db");
  ASSERT_NE(source, nullptr);
  // Text that YAML would otherwise mangle: quotes, escapes, newlines,
  // control characters, "key: value", comments, leading and trailing blanks,
  // unicode, a BOM, DEL, and bytes that are not UTF-8.
  const std::vector<std::string> texts = {
      "",
      "plain",
      "  lead and trail  ",
      "quote \" back\\slash 'single' : colon # hash",
      "line1\nline2\r\n\ttab\x01\x1f\x7f end",
      "\xc3\xa9\xe6\x97\xa5\xf0\x9f\x9a\x80 \xef\xbb\xbf \xc2\x85",
      "not utf-8 \xff\xfe\xc3",
      "- [a, b]\n? {x: y}\n&anchor *alias !tag %",
      "null",
      "~",
      "123",
  };
  // (No NaN: SQLite stores a NaN as NULL, which a verdict's change may not be.)
  const double changes[] = {-0.25,     0.1,      1.0 / 3.0, -0.0,
                            1e-300,    1e300,    -1.5e-7,   5e-324,
                            0.1 + 0.2, INFINITY, -INFINITY};
  for (size_t i = 0; i < texts.size(); ++i) {
    Complete(*source, "exp-" + std::to_string(i), texts[i],
             kT0 + absl::Seconds(i), changes[i]);
    if (HasFatalFailure()) return;
  }
  const std::string first = Export(*source);
  ASSERT_FALSE(first.empty());

  auto parsed = ParseHistoryFile(first, "history.yaml");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), texts.size());
  auto target = Open("target.db");
  ASSERT_NE(target, nullptr);
  auto counts = target->ImportHistory(*parsed);
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->imported, static_cast<int>(texts.size()));
  EXPECT_EQ(counts->already_present, 0);

  const std::string second = Export(*target);
  EXPECT_EQ(second, first);

  // What was imported is what was stored, text for text.
  auto back = target->ListHistory({});
  ASSERT_TRUE(back.ok());
  for (size_t i = 0; i < texts.size(); ++i) {
    SCOPED_TRACE("text #" + std::to_string(i));
    EXPECT_EQ((*back)[i].experiment.campaign, texts[i]);
    EXPECT_EQ((*back)[i].experiment.report_text, texts[i] + "\n\n");
    EXPECT_EQ((*back)[i].verdicts[0].reason, "slower: " + texts[i]);
    EXPECT_EQ((*back)[i].attempt.seed, ~uint64_t{0});
    EXPECT_EQ((*back)[i].experiment.created_at, kT0 + absl::Seconds(i));
  }

  // Importing the same file again imports nothing.
  auto again = target->ImportHistory(*parsed);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->imported, 0);
  EXPECT_EQ(again->already_present, static_cast<int>(texts.size()));
  EXPECT_EQ(Export(*target), first);
}

TEST_F(HistoryFileTest, ExportNamesOriginsStableAcrossExportsAndDistinct) {
  auto store = Open("s.db");
  ASSERT_NE(store, nullptr);
  Complete(*store, "a", "x", kT0, 0.1);
  Complete(*store, "b", "x", kT0, 0.1);
  auto entries = store->ListHistory({});
  ASSERT_TRUE(entries.ok());
  const std::string o1 = OriginOf((*entries)[0]);
  EXPECT_THAT(o1, ::testing::StartsWith("bf1:"));
  EXPECT_EQ(o1.size(), 44u);
  EXPECT_NE(o1, OriginOf((*entries)[1]));
  EXPECT_EQ(Export(*store), Export(*store));
  // The lease token (a credential while the attempt ran) is not in the file.
  EXPECT_THAT(Export(*store), ::testing::Not(HasSubstr("tok-a")));
}

TEST_F(HistoryFileTest, WrittenFileShowsResultsAndEnvironmentForReaders) {
  auto store = Open("s.db");
  ASSERT_NE(store, nullptr);
  Complete(*store, "mpt", "q1", kT0, -0.2);
  const std::string file = Export(*store);
  EXPECT_THAT(file, HasSubstr("version: 1\n"));
  EXPECT_THAT(file, HasSubstr("created_at: \"2023-11-14T22:13:20.123456Z\""));
  EXPECT_THAT(file, HasSubstr("- {input: \"heavy\", variant: \"baseline\", "
                              "baseline: true, median: 12345.678, n: 10"));
  EXPECT_THAT(file, HasSubstr("fingerprint: \"f00d\""));
  EXPECT_THAT(file, HasSubstr("commit: \"c0ffee\""));
}

// Each malformed file is refused with file:line:column and what was expected.
TEST_F(HistoryFileTest, MalformedFilesAreRefusedWithLineColumnAndExpectation) {
  auto store = Open("s.db");
  ASSERT_NE(store, nullptr);
  Complete(*store, "mpt", "q1", kT0, -0.2);
  const std::string good = Export(*store);
  struct Case {
    std::string from, to, expect;
  };
  const std::vector<Case> cases = {
      {"version: 1", "version: 2", "h.yaml:4:10: version: expected version 1"},
      {"kind: History", "kind: Spec", "h.yaml:3:7: kind: expected \"History\""},
      {"    seed: ", "    seed: -",
       "experiments[0].attempt.seed: expected an "
       "unsigned integer"},
      {"    number: 1", "    number: one",
       "h.yaml:7:13: experiments[0].number: expected an integer"},
      {"    created_at: \"2023", "    created_at: \"yesterday",
       "experiments[0].created_at: expected an RFC 3339 time"},
      {"    idea:", "    ideas:", "unknown key \"ideas\""},
      {"    state_reason: \"\"", "    state_reason: [1, 2]",
       "experiments[0].state_reason: expected a string"},
      {"        change: -0.2", "        change: lots",
       "experiments[0].verdicts[0].change: expected a number"},
      {"experiments:\n", "experiments: [\n", "not valid YAML"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.to);
    ASSERT_THAT(good, HasSubstr(c.from));
    const std::string bad = absl::StrReplaceAll(good, {{c.from, c.to}});
    auto parsed = ParseHistoryFile(bad, "h.yaml");
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.expect));
    EXPECT_THAT(std::string(parsed.status().message()),
                ::testing::StartsWith("h.yaml:"));
  }
  auto missing = ParseHistoryFile(
      "apiVersion: benchfleet/v1\nkind: History\nversion: 1\n"
      "experiments:\n  - origin: \"x\"\n",
      "h.yaml");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(),
              HasSubstr("h.yaml:5:5: experiments[0]: missing key \"number\""));
}

TEST_F(HistoryFileTest, AliasBombsAndHugeFilesAreRefusedBeforeExpansion) {
  std::string bomb =
      "apiVersion: benchfleet/v1\nkind: History\nversion: 1\n"
      "a: &a [\"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\", \"x\"]\n";
  char prev = 'a';
  for (char name = 'b'; name <= 'k'; ++name, ++prev) {
    bomb += std::string(1, name) + ": &" + name + " [";
    for (int i = 0; i < 8; ++i) bomb += std::string(i ? ", *" : "*") + prev;
    bomb += "]\n";
  }
  bomb += "experiments: [*k]\n";
  auto parsed = ParseHistoryFile(bomb, "bomb.yaml");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(parsed.status().message(), HasSubstr("found an anchor (&name)"));
  EXPECT_THAT(std::string(parsed.status().message()),
              ::testing::StartsWith("bomb.yaml:4:"));

  const std::string huge(kMaxHistoryFileBytes + 1, '#');
  auto too_big = ParseHistoryFile(huge, "big.yaml");
  ASSERT_FALSE(too_big.ok());
  EXPECT_THAT(too_big.status().message(), HasSubstr("big.yaml: the file is"));

  auto two_docs = ParseHistoryFile(
      "apiVersion: benchfleet/v1\n---\nkind: History\n", "two.yaml");
  ASSERT_FALSE(two_docs.ok());
  EXPECT_THAT(two_docs.status().message(), HasSubstr("second YAML document"));

  // The first problem in document order is the one reported: the second
  // document starts before its anchor.
  auto anchor_after_second = ParseHistoryFile(
      "apiVersion: benchfleet/v1\n---\nkind: &k History\n", "two.yaml");
  ASSERT_FALSE(anchor_after_second.ok());
  EXPECT_EQ(anchor_after_second.status().message(),
            "two.yaml:2:1: found a second YAML document; expected one "
            "document per file");
}

}  // namespace
}  // namespace benchfleet
