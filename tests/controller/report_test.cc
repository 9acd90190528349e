#include "controller/report/report.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace benchfleet {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

InputRow Row(std::string input, int64_t cand_kept, int64_t cand_measured,
             int64_t base_kept, int64_t base_measured) {
  InputRow row;
  row.input = std::move(input);
  row.n_candidate = cand_kept;
  row.n_candidate_measured = cand_measured;
  row.n_baseline = base_kept;
  row.n_baseline_measured = base_measured;
  row.outliers_removed =
      (cand_measured - cand_kept) + (base_measured - base_kept);
  row.baseline_median = 27.98e6;
  row.candidate_median = 19.22e6;
  row.candidate_cv = 0.124;
  row.change = 19.22 / 27.98 - 1;
  row.ci_low = -0.41;
  row.ci_high = -0.203;
  row.p_value = 1e-5;
  row.verdict = "KEEP";
  return row;
}

ExperimentReport OneCandidate(CandidateReport c) {
  ExperimentReport report;
  report.number = 7;
  report.name = "demo";
  report.baseline = "base";
  report.outlier_sigmas = 2;
  report.candidates.push_back(std::move(c));
  return report;
}

CandidateReport Inconclusive() {
  CandidateReport c;
  c.variant = "fast";
  c.verdict = "INCONCLUSIVE";
  c.reason = "input 'big' too noisy";
  c.baseline_median = 27.98e6;
  c.candidate_median = 19.22e6;
  c.change = 19.22 / 27.98 - 1;
  c.change_measured = true;
  return c;
}

TEST(ReportTextTest, ShowsKeptOverMeasuredRunsPerSideAndALegend) {
  CandidateReport c = Inconclusive();
  c.inputs.push_back(Row("big", 7, 10, 20, 20));
  c.inputs.push_back(Row("small", 10, 10, 9, 10));
  const std::string text = RenderReportText(OneCandidate(c));
  EXPECT_THAT(text, HasSubstr("input   cand n   base n"));
  EXPECT_THAT(text, HasSubstr("big       7/10    20/20"));
  EXPECT_THAT(text, HasSubstr("small    10/10     9/10"));
  EXPECT_THAT(text,
              HasSubstr("\n  n = kept/measured runs; 4 outliers (> 2 robust σ) "
                        "removed on noisy inputs\n"));
}

TEST(ReportTextTest, NoLegendWithoutOutliers) {
  CandidateReport c = Inconclusive();
  c.inputs.push_back(Row("big", 10, 10, 10, 10));
  const std::string text = RenderReportText(OneCandidate(c));
  EXPECT_THAT(text, HasSubstr("10/10"));
  EXPECT_THAT(text, Not(HasSubstr("kept/measured")));
}

TEST(ReportTextTest, ChangeIsTheMeasuredAggregateWhateverTheVerdict) {
  for (const char* verdict : {"INCONCLUSIVE", "REJECT", "KILL", "DISCARD"}) {
    CandidateReport c = Inconclusive();
    c.verdict = verdict;
    const std::string text = RenderReportText(OneCandidate(c));
    EXPECT_THAT(text, HasSubstr("Result: 19.22 ms (baseline: 27.98 ms)\n"))
        << verdict;
    EXPECT_THAT(text, HasSubstr("Change: -31.3%")) << verdict;
  }
}

TEST(ReportTextTest, ChangeShowsTheAggregateCiWhenThereIsOne) {
  CandidateReport c = Inconclusive();
  EXPECT_THAT(RenderReportText(OneCandidate(c)), HasSubstr("Change: -31.3%\n"));
  c.change_ci_low = -0.35;
  c.change_ci_high = -0.28;
  EXPECT_THAT(RenderReportText(OneCandidate(c)),
              HasSubstr("Change: -31.3% (95% CI -35.0% to -28.0%)\n"));
  const nlohmann::json j = nlohmann::json::parse(ReportToJson(OneCandidate(c)));
  EXPECT_THAT(j["candidates"][0]["change_ci"],
              ::testing::ElementsAre(-0.35, -0.28));
}

TEST(ReportTextTest, ChangeIsNotApplicableWithoutAnAggregate) {
  CandidateReport c = Inconclusive();
  c.change = 0;
  c.change_measured = false;
  EXPECT_THAT(RenderReportText(OneCandidate(c)), HasSubstr("Change: n/a\n"));
}

TEST(ReportJsonTest, HasKeptAndMeasuredCountsUnderOldAndNewNames) {
  CandidateReport c = Inconclusive();
  c.inputs.push_back(Row("big", 7, 10, 20, 20));
  const nlohmann::json j = nlohmann::json::parse(ReportToJson(OneCandidate(c)));
  EXPECT_EQ(j["outlier_sigmas"], 2.0);
  const nlohmann::json& jc = j["candidates"][0];
  EXPECT_EQ(jc["change_measured"], true);
  EXPECT_NEAR(jc["change"].get<double>(), 19.22 / 27.98 - 1, 1e-12);
  const nlohmann::json& row = jc["inputs"][0];
  EXPECT_EQ(row["n_candidate"], 7);  // kept, as before
  EXPECT_EQ(row["n_baseline"], 20);
  EXPECT_EQ(row["n_candidate_kept"], 7);
  EXPECT_EQ(row["n_baseline_kept"], 20);
  EXPECT_EQ(row["n_candidate_measured"], 10);
  EXPECT_EQ(row["n_baseline_measured"], 20);
  EXPECT_EQ(row["outliers_removed"], 3);
}

TEST(ReportSourceTest, NamesTheCommitEachVariantWasMeasuredAt) {
  ExperimentReport report = OneCandidate(Inconclusive());
  report.source_repo = "/srv/git/app.git";
  report.source_commits = {{"base", "main", std::string(40, 'a')},
                           {"fast", "bench/fast", std::string(40, 'b')}};
  EXPECT_THAT(
      RenderReportText(report),
      ::testing::HasSubstr(absl::StrCat(
          "\nSource: /srv/git/app.git\n  - base: ", std::string(40, 'a'),
          " (main)\n  - fast: ", std::string(40, 'b'), " (bench/fast)\n")));
  const nlohmann::json j = nlohmann::json::parse(ReportToJson(report));
  EXPECT_EQ(j["source_repo"], "/srv/git/app.git");
  ASSERT_EQ(j["sources"].size(), 2u);
  EXPECT_EQ(j["sources"][1]["variant"], "fast");
  EXPECT_EQ(j["sources"][1]["ref"], "bench/fast");
  EXPECT_EQ(j["sources"][1]["commit"], std::string(40, 'b'));
}

TEST(ReportSourceTest, SaysNothingOfSourcesWithoutARepository) {
  ExperimentReport report = OneCandidate(Inconclusive());
  EXPECT_THAT(RenderReportText(report),
              ::testing::Not(::testing::HasSubstr("Source:")));
  EXPECT_FALSE(nlohmann::json::parse(ReportToJson(report)).contains("sources"));
}

}  // namespace
}  // namespace benchfleet
