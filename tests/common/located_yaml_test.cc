// Tests for the located-YAML reader (common/yaml/): parsing with locations
// and shape checks, the typed reader's diagnostics (did-you-mean, duplicates,
// missing keys, wrong shapes, ordering), and the shared value conversions.
#include "common/yaml/located_yaml.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/yaml/located_reader.h"
#include "common/yaml/yaml_values.h"

namespace benchfleet::yaml {
namespace {

using ::testing::HasSubstr;

// ---- ParseYaml: tree and locations ----

TEST(ParseYamlTest, EveryNodeKeepsItsOneBasedLineAndColumn) {
  ParseResult r = ParseYaml("a: 1\nlist:\n  - x\n  - {k: v}\n");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.root.IsMap());
  ASSERT_EQ(r.root.size(), 2u);
  const auto& [a_key, a_value] = r.root.entries()[0];
  EXPECT_EQ(a_key.Scalar(), "a");
  EXPECT_EQ(a_key.mark().Line(), 1);
  EXPECT_EQ(a_key.mark().Column(), 1);
  EXPECT_EQ(a_value.Scalar(), "1");
  EXPECT_EQ(a_value.mark().Column(), 4);
  const Node& list = r.root.entries()[1].second;
  ASSERT_TRUE(list.IsSequence());
  ASSERT_EQ(list.items().size(), 2u);
  EXPECT_EQ(list.items()[0].Scalar(), "x");
  EXPECT_EQ(list.items()[0].mark().Line(), 3);
  EXPECT_EQ(list.items()[0].mark().Column(), 5);
  const Node& inner = list.items()[1];
  ASSERT_TRUE(inner.IsMap());
  EXPECT_EQ(inner.mark().Line(), 4);
  EXPECT_EQ(inner.entries()[0].second.Scalar(), "v");
  EXPECT_EQ(inner.entries()[0].second.mark().Column(), 9);
}

TEST(ParseYamlTest, NullsTagsAndQuotedScalars) {
  ParseResult r = ParseYaml("a:\nb: \"\"\nc: !!binary \"aGk=\"\nd: ~\n");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.root.entries()[0].second.IsNull());
  EXPECT_TRUE(r.root.entries()[1].second.IsScalar());
  EXPECT_EQ(r.root.entries()[1].second.Scalar(), "");
  EXPECT_EQ(r.root.entries()[2].second.Tag(), "tag:yaml.org,2002:binary");
  EXPECT_TRUE(r.root.entries()[3].second.IsNull());
}

TEST(ParseYamlTest, EmptyTextIsANullRootWithoutDocument) {
  for (const char* text : {"", "# only a comment\n"}) {
    ParseResult r = ParseYaml(text);
    ASSERT_TRUE(r.ok()) << text;
    EXPECT_FALSE(r.has_document) << text;
    EXPECT_TRUE(r.root.IsNull()) << text;
    EXPECT_EQ(r.root.mark().Line(), 1);
    EXPECT_EQ(r.root.mark().Column(), 1);
  }
}

TEST(ParseYamlTest, SyntaxErrorIsReportedWithItsPlaceNotThrown) {
  ParseResult r = ParseYaml("a: [1, 2\nb: 3\n");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ParseError::Kind::kSyntax);
  EXPECT_FALSE(r.error().message.empty());
  EXPECT_GE(r.error().mark.Line(), 1);
}

TEST(ParseYamlTest, SecondDocumentIsRefusedOnlyWhenAskedTo) {
  const char* text = "a: 1\n---\nb: 2\n";
  ParseResult single = ParseYaml(text);
  ASSERT_FALSE(single.ok());
  EXPECT_EQ(single.error().kind, ParseError::Kind::kSecondDocument);
  EXPECT_FALSE(single.error().restarts_in_place);
  EXPECT_EQ(single.error().mark.Line(), 2);

  ParseResult first = ParseYaml(text, {.single_document = false});
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first.root.size(), 1u);
  EXPECT_EQ(first.root.entries()[0].first.Scalar(), "a");
}

TEST(ParseYamlTest, StrayCommaAtDocumentLevelEndsInsteadOfLooping) {
  // yaml-cpp 0.7 would start empty documents at the ',' forever.
  ParseResult r = ParseYaml(",");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ParseError::Kind::kSecondDocument);
  EXPECT_TRUE(r.error().restarts_in_place);
  EXPECT_EQ(r.error().message, "unexpected ','");
}

TEST(ParseYamlTest, AnchorsAndAliasesAreFollowedOrRefused) {
  const char* text = "a: &x [1, 2]\nb: *x\n";
  ParseResult allowed = ParseYaml(text);
  ASSERT_TRUE(allowed.ok());
  EXPECT_EQ(allowed.root.entries()[1].second.items().size(), 2u);

  ParseResult refused = ParseYaml(text, {.allow_anchors = false});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().kind, ParseError::Kind::kAnchor);
  EXPECT_EQ(refused.error().mark.Line(), 1);

  // The first anchor is reported, wherever it is.
  ParseResult later = ParseYaml("a: 1\nb: &x 2\n", {.allow_anchors = false});
  ASSERT_FALSE(later.ok());
  EXPECT_EQ(later.error().kind, ParseError::Kind::kAnchor);
  EXPECT_EQ(later.error().mark.Line(), 2);
}

TEST(ParseYamlTest, AliasBombIsRefusedAtItsTopLevelKey) {
  std::string bomb = "ok: 1\nl0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 8; ++i) {
    absl::StrAppend(&bomb, "l", i, ": &l", i, " [");
    for (int j = 0; j < 10; ++j)
      absl::StrAppend(&bomb, j ? ", " : "", "*l", i - 1);
    bomb += "]\n";
  }
  ParseResult r = ParseYaml(bomb, {.max_nodes = 100000});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ParseError::Kind::kTooManyNodes);
  EXPECT_EQ(r.error().top_key, "l4");  // 10^5 nodes first cross the limit
  EXPECT_EQ(r.error().mark.Line(), 6);
  EXPECT_THAT(r.error().message, HasSubstr("100000"));
}

TEST(ParseYamlTest, SelfReferencingAliasIsRefusedNotExpanded) {
  ParseResult r = ParseYaml("a: &x [*x]\n", {.max_nodes = 1000});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ParseError::Kind::kTooManyNodes);
  EXPECT_EQ(r.error().top_key, "a");
}

TEST(ParseYamlTest, DeepNestingIsTooDeep) {
  std::string deep(5000, '[');
  ParseResult r = ParseYaml(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ParseError::Kind::kTooDeep);
  EXPECT_GT(r.error().depth, 0);
}

TEST(ReadYamlFileTest, MissingFileIsUnreadable) {
  ParseResult r = ReadYamlFile("/nonexistent/benchfleet/file.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ParseError::Kind::kUnreadable);
}

TEST(FormatAtTest, FileLineColumnFieldMessage) {
  Mark mark{.pos = 10, .line = 2, .column = 4};
  EXPECT_EQ(FormatAt("s.yaml", mark, "benchmark.runs", "bad; fix it"),
            "s.yaml:3:5: benchmark.runs: bad; fix it");
  EXPECT_EQ(FormatAt("s.yaml", mark, "", "bad"), "s.yaml:3:5: bad");
  EXPECT_EQ(FormatAt("s.yaml", Mark{}, "", "empty"), "s.yaml:1:1: empty");
}

// ---- LocatedReader ----

class LocatedReaderTest : public ::testing::Test {
 protected:
  // Parses `text` (which must be valid) and returns its root as an Item.
  Item Root(const std::string& text) {
    parsed_ = ParseYaml(text);
    EXPECT_TRUE(parsed_.ok());
    return Item{&parsed_.root, parsed_.root.mark(), ""};
  }
  std::string Errors() {
    return std::string(reader_.ErrorStatus(100).message());
  }
  ParseResult parsed_;
  LocatedReader reader_{"f.yaml"};
};

constexpr absl::string_view kKeys[] = {"runs", "warmup", "timeout"};

// ---- CheckKeys: the rule for a mapping's keys ----

TEST(CheckKeysTest, SaysForEachKeyInOrderWhatIsWrongWithIt) {
  ParseResult r =
      ParseYaml("runs: 1\nwramup: 2\n? [a]\n: 3\nruns: 4\nzzzzzz: 5\n");
  ASSERT_TRUE(r.ok());
  constexpr absl::string_view kAllowed[] = {"runs", "warmup", "timeout"};
  const std::vector<CheckedKey> keys = CheckKeys(r.root, kAllowed);
  ASSERT_EQ(keys.size(), 5u);
  EXPECT_EQ(keys[0].status, KeyStatus::kAllowed);
  EXPECT_EQ(keys[0].key->Scalar(), "runs");
  EXPECT_EQ(keys[0].value->Scalar(), "1");
  EXPECT_EQ(keys[1].status, KeyStatus::kUnknown);
  EXPECT_EQ(keys[1].suggestion, "warmup");
  EXPECT_EQ(keys[2].status, KeyStatus::kNotPlain);
  EXPECT_EQ(keys[2].value->Scalar(), "3");
  EXPECT_EQ(keys[3].status, KeyStatus::kDuplicate);
  EXPECT_EQ(keys[3].key->mark().Line(), 5);
  EXPECT_EQ(keys[3].first.Line(), 1);
  EXPECT_EQ(keys[4].status, KeyStatus::kUnknown);
  EXPECT_EQ(keys[4].suggestion, "");
}

TEST(CheckKeysTest, RepeatedUnknownKeysAreUnknownNotDuplicates) {
  ParseResult r = ParseYaml("other: 1\nother: 2\n");
  ASSERT_TRUE(r.ok());
  constexpr absl::string_view kAllowed[] = {"runs"};
  const std::vector<CheckedKey> keys = CheckKeys(r.root, kAllowed);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0].status, KeyStatus::kUnknown);
  EXPECT_EQ(keys[1].status, KeyStatus::kUnknown);
}

TEST(CheckKeysTest, ANodeThatIsNotAMappingHasNoKeys) {
  ParseResult r = ParseYaml("[runs, warmup]\n");
  ASSERT_TRUE(r.ok());
  constexpr absl::string_view kAllowed[] = {"runs"};
  EXPECT_TRUE(CheckKeys(r.root, kAllowed).empty());
}

TEST_F(LocatedReaderTest, UnknownKeyGetsDidYouMeanAndItsPlace) {
  auto m = reader_.ReadMapping(Root("runs: 3\nwramup: 1\n"), kKeys, "x");
  ASSERT_TRUE(m.has_value());
  EXPECT_NE(m->Find("runs"), nullptr);
  EXPECT_EQ(m->Find("wramup"), nullptr);
  EXPECT_EQ(Errors(),
            "f.yaml:2:1: wramup: unknown key (did you mean warmup?); expected "
            "one of the keys allowed at the top level: runs, warmup, timeout");
}

TEST_F(LocatedReaderTest, FarOffKeyGetsNoSuggestion) {
  reader_.ReadMapping(Root("zzzzzz: 1\n"), kKeys, "x");
  EXPECT_THAT(Errors(), HasSubstr("zzzzzz: unknown key; expected"));
}

TEST_F(LocatedReaderTest, DuplicateKeyNamesTheFirstLine) {
  reader_.ReadMapping(Root("runs: 3\nwarmup: 1\nruns: 4\n"), kKeys, "x");
  EXPECT_EQ(Errors(),
            "f.yaml:3:1: runs: duplicate key (first set on line 1); expected "
            "each key once, remove one of them");
}

TEST_F(LocatedReaderTest, MissingKeyIsReportedAtTheMapping) {
  auto m = reader_.ReadMapping(Root("\n\nwarmup: 1\n"), kKeys, "x");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(reader_.Require(*m, "runs", "add runs: 10"), nullptr);
  EXPECT_EQ(Errors(), "f.yaml:3:1: runs: missing; add runs: 10");
}

TEST_F(LocatedReaderTest, WrongShapesSayWhatWasFound) {
  Item root = Root("a: [1]\nb: {k: v}\nc:\nd: {input}\ne: word\n");
  constexpr absl::string_view kAll[] = {"a", "b", "c", "d", "e"};
  auto m = reader_.ReadMapping(root, kAll, "x");
  ASSERT_TRUE(m.has_value());
  for (const char* key : {"a", "b", "c", "d"}) {
    reader_.ReadScalar(*m->Find(key), "a string");
  }
  reader_.ReadList(*m->Find("e"), "a list");
  EXPECT_EQ(Errors(),
            "f.yaml:1:4: a: got a list; expected a string\n"
            "f.yaml:2:4: b: got a mapping; expected a string\n"
            "f.yaml:3:1: c: has no value; expected a string\n"
            "f.yaml:4:4: d: got the mapping {input} (YAML reads unquoted "
            "{...} as a mapping); expected a string, so quote it: "
            "\"{input}\"\n"
            "f.yaml:5:4: e: got \"word\"; expected a list");
}

TEST_F(LocatedReaderTest, TypedValuesConvertOrExplain) {
  Item root = Root(
      "i: 12\nbad_i: 1.5\nn: 2.5\nbad_n: inf\nb: True\nbad_b: yes\n"
      "d: 1h30m\nbad_d: 10\np: 10%\nbad_p: -3%\nl: [x, y]\nbad_l: [x, \"\"]\n");
  ASSERT_TRUE(root.node->IsMap());
  std::map<std::string, Item> items;
  for (const auto& [k, v] : root.node->entries()) {
    items[k.Scalar()] = Item{&v, v.mark(), k.Scalar()};
  }
  EXPECT_EQ(reader_.ReadInt(items["i"], "an int"), 12);
  EXPECT_EQ(reader_.ReadInt(items["bad_i"], "an int"), std::nullopt);
  EXPECT_EQ(reader_.ReadNumber(items["n"], "a number"), 2.5);
  EXPECT_EQ(reader_.ReadNumber(items["bad_n"], "a number"), std::nullopt);
  EXPECT_EQ(reader_.ReadBool(items["b"]), true);
  EXPECT_EQ(reader_.ReadBool(items["bad_b"]), std::nullopt);
  EXPECT_EQ(reader_.ReadDuration(items["d"]), absl::Minutes(90));
  EXPECT_EQ(reader_.ReadDuration(items["bad_d"]), std::nullopt);
  EXPECT_EQ(reader_.ReadPercent(items["p"]), 0.1);
  EXPECT_EQ(reader_.ReadPercent(items["bad_p"]), std::nullopt);
  EXPECT_EQ(reader_.ReadStringList(items["l"], "a list"),
            (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(reader_.ReadStringList(items["bad_l"], "a list"), std::nullopt);
  EXPECT_EQ(
      Errors(),
      "f.yaml:2:8: bad_i: \"1.5\" is not a whole number; expected an int\n"
      "f.yaml:4:8: bad_n: \"inf\" is not a number; expected a number\n"
      "f.yaml:6:8: bad_b: \"yes\" is not a boolean; expected true or false\n"
      "f.yaml:8:8: bad_d: \"10\" has no unit; expected a number with a unit "
      "(ms, s, m, h), e.g. 500ms, 60s, 15m or 1h30m\n"
      "f.yaml:10:8: bad_p: \"-3%\" is negative; expected a percentage of 0% "
      "or more, e.g. 10%\n"
      "f.yaml:12:12: bad_l[1]: is empty; expected a string");
}

TEST_F(LocatedReaderTest, ErrorsAreOrderedByPlaceAndCapped) {
  reader_.Error(Mark{.line = 5, .column = 0}, "b", "second");
  reader_.Error(Mark{.line = 1, .column = 2}, "a", "first");
  reader_.Error(Mark{.line = 9, .column = 0}, "c", "third");
  EXPECT_EQ(std::string(reader_.ErrorStatus(2).message()),
            "f.yaml:2:3: a: first\nf.yaml:6:1: b: second\n"
            "f.yaml:10:1: 1 more errors not shown; fix the errors above and "
            "validate again");
}

TEST_F(LocatedReaderTest, WarningsAreOrderedByPlace) {
  const Node node;
  reader_.Warn(Item{&node, Mark{.line = 3, .column = 0}, "x"}, "later");
  reader_.Warn(Item{&node, Mark{.line = 0, .column = 0}, "y"}, "sooner");
  EXPECT_FALSE(reader_.has_errors());
  EXPECT_THAT(
      reader_.TakeWarnings(),
      ::testing::ElementsAre("f.yaml:1:1: y: sooner", "f.yaml:4:1: x: later"));
}

// ---- values ----

TEST(YamlValuesTest, EditDistanceAndSuggest) {
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("runs", "runs"), 0u);
  constexpr absl::string_view kCandidates[] = {"runs", "max_runs", "seed"};
  EXPECT_EQ(Suggest("RUNS", kCandidates), "runs");
  EXPECT_EQ(Suggest("max_run", kCandidates), "max_runs");
  EXPECT_EQ(Suggest("sed", kCandidates), "seed");
  EXPECT_EQ(Suggest("completely", kCandidates), "");
  // Not closer than the candidate's own length: "ab" is not "did you mean a".
  constexpr absl::string_view kShort[] = {"a"};
  EXPECT_EQ(Suggest("b", kShort), "");
}

TEST(YamlValuesTest, NumbersAreStrict) {
  EXPECT_EQ(ToDouble("1.5e3"), 1500.0);
  EXPECT_EQ(ToDouble("-0.25"), -0.25);
  for (const char* bad :
       {"", "inf", "nan", "0x10", " 1", "1 ", "1e", ".", "1e999"}) {
    EXPECT_EQ(ToDouble(bad), std::nullopt) << bad;
  }
  EXPECT_EQ(ToWholeNumber("-42"), -42);
  for (const char* bad : {"1.0", "1e3", "99999999999999999999", "x"}) {
    EXPECT_EQ(ToWholeNumber(bad), std::nullopt) << bad;
  }
  EXPECT_EQ(ToInt64(" 7"), 7);  // the lenient reading the history file uses
  EXPECT_EQ(ToUint64("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(ToUint64("-1"), std::nullopt);
}

TEST(YamlValuesTest, Booleans) {
  for (const char* t : {"true", "True", "TRUE"}) EXPECT_EQ(ToBool(t), true);
  for (const char* f : {"false", "False", "FALSE"}) EXPECT_EQ(ToBool(f), false);
  for (const char* bad : {"yes", "1", "tRUE", ""}) {
    EXPECT_EQ(ToBool(bad), std::nullopt) << bad;
  }
}

TEST(YamlValuesTest, DurationsAndPercentages) {
  EXPECT_EQ(*ParseDuration("250ms"), absl::Milliseconds(250));
  EXPECT_EQ(*ParseDuration("5s"), absl::Seconds(5));
  EXPECT_EQ(*ParseDuration("1h30m"), absl::Minutes(90));
  EXPECT_EQ(ParseDuration("5").status().message(),
            "\"5\" has no unit; expected a number with a unit (ms, s, m, h), "
            "e.g. 500ms, 60s, 15m or 1h30m");
  EXPECT_FALSE(ParseDuration("5x").ok());
  EXPECT_FALSE(ParseDuration("1234567890s").ok());
  EXPECT_DOUBLE_EQ(*ParsePercent("12.5%"), 0.125);
  EXPECT_DOUBLE_EQ(*ParsePercent("0.2"), 0.2);
  EXPECT_FALSE(ParsePercent("%").ok());
  EXPECT_FALSE(ParsePercent("-0%").ok());
}

TEST(YamlValuesTest, YamlFloatsTimesAndBase64) {
  EXPECT_TRUE(std::isnan(*ToYamlFloat(".nan")));
  EXPECT_EQ(*ToYamlFloat("-.inf"), -HUGE_VAL);
  EXPECT_EQ(*ToYamlFloat("0.1"), 0.1);
  EXPECT_EQ(ToYamlFloat("0.1x"), std::nullopt);
  EXPECT_EQ(ToYamlFloat(""), std::nullopt);
  EXPECT_EQ(ToRfc3339Time("2026-03-01T12:00:00.000000Z"),
            absl::FromUnixSeconds(1772366400));
  EXPECT_EQ(ToRfc3339Time("yesterday"), std::nullopt);
  const std::string bytes("\xff\x00\x01z", 4);
  EXPECT_EQ(DecodeBase64(EncodeBase64(bytes)), bytes);
  EXPECT_EQ(DecodeBase64("!!!"), "");
}

TEST(YamlValuesTest, QuotingEscapesAndShortens) {
  EXPECT_EQ(Quote("a\tb"), "\"a\\x09b\"");
  EXPECT_EQ(Escape(std::string(70, 'x')), std::string(60, 'x') + "...");
  EXPECT_EQ(QuoteChar(','), "','");
  EXPECT_EQ(QuoteChar('\x01'), "byte 0x01");
}

}  // namespace
}  // namespace benchfleet::yaml
