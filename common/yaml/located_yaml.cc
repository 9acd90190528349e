#include "common/yaml/located_yaml.h"

#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/yaml/yaml_values.h"
#include "yaml-cpp/depthguard.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace benchfleet::yaml {
namespace {

Mark ToMark(const YAML::Mark& m) { return Mark{m.pos, m.line, m.column}; }

// Records where each document starts and, when asked, the first anchor or
// alias; builds nothing.
class ShapeCheck : public YAML::EventHandler {
 public:
  ShapeCheck(const ParseOptions& options, std::vector<YAML::Mark>* starts)
      : allow_anchors_(options.allow_anchors),
        single_document_(options.single_document),
        starts_(starts) {}

  // The first problem in document order.
  std::optional<ParseError> problem;

  void OnDocumentStart(const YAML::Mark& mark) override {
    starts_->push_back(mark);
    if (single_document_ && starts_->size() == 2) {
      Flag(ParseError::Kind::kSecondDocument, mark);
      if (problem->kind == ParseError::Kind::kSecondDocument &&
          (*starts_)[0].pos == mark.pos) {
        problem->restarts_in_place = true;
      }
    }
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    Anchor(mark, anchor);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
    if (!allow_anchors_) Flag(ParseError::Kind::kAlias, mark);
  }
  void OnScalar(const YAML::Mark& mark, const std::string&,
                YAML::anchor_t anchor, const std::string&) override {
    Anchor(mark, anchor);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&,
                       YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Anchor(mark, anchor);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&,
                  YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    Anchor(mark, anchor);
  }
  void OnMapEnd() override {}

 private:
  void Anchor(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (!allow_anchors_ && anchor != YAML::NullAnchor) {
      Flag(ParseError::Kind::kAnchor, mark);
    }
  }
  void Flag(ParseError::Kind kind, const YAML::Mark& mark) {
    if (!problem) problem = ParseError{.kind = kind, .mark = ToMark(mark)};
  }
  bool allow_anchors_;
  bool single_document_;
  std::vector<YAML::Mark>* starts_;
};

// Walks the whole document without recursion, counting each node every time
// it is reached (an alias reached twice counts twice), and stops past
// `max_nodes`. yaml-cpp shares aliased nodes and even builds cycles for
// `&a [*a]`, so this runs before the tree is copied.
std::optional<ParseError> CheckExpandedSize(const YAML::Node& root,
                                            int64_t max_nodes) {
  struct Top {
    YAML::Node key;
    YAML::Node value;
    YAML::Mark mark;
    std::string name;
  };
  std::vector<Top> tops;
  if (root.IsMap()) {
    for (auto it = root.begin(); it != root.end(); ++it) {
      tops.push_back(Top{it->first, it->second, it->first.Mark(),
                         it->first.IsScalar() ? it->first.Scalar() : ""});
    }
  } else {
    tops.push_back(Top{YAML::Node(), root, root.Mark(), ""});
  }
  int64_t count = 1;
  std::vector<YAML::Node> stack;
  for (const Top& top : tops) {
    count += 2;
    stack.assign(1, top.value);
    if (top.key.IsDefined()) stack.push_back(top.key);
    while (!stack.empty() && count <= max_nodes) {
      YAML::Node node = stack.back();
      stack.pop_back();
      if (node.IsMap()) {
        for (auto it = node.begin(); it != node.end() && count <= max_nodes;
             ++it) {
          count += 2;
          stack.push_back(it->first);
          stack.push_back(it->second);
        }
      } else if (node.IsSequence()) {
        for (auto it = node.begin(); it != node.end() && count <= max_nodes;
             ++it) {
          count += 1;
          stack.push_back(*it);
        }
      }
    }
    if (count > max_nodes) {
      return ParseError{
          .kind = ParseError::Kind::kTooManyNodes,
          .mark = ToMark(top.mark),
          .message = absl::StrCat("expands to more than ", max_nodes,
                                  " YAML nodes once aliases are followed"),
          .top_key = top.name};
    }
  }
  return std::nullopt;
}

}  // namespace

// Copies a yaml-cpp tree (already bounded by CheckExpandedSize) into Nodes,
// without recursion.
class TreeBuilder {
 public:
  static Node Build(const YAML::Node& source) {
    Node root;
    std::vector<std::pair<YAML::Node, Node*>> stack;
    stack.emplace_back(source, &root);
    while (!stack.empty()) {
      auto [from, to] = stack.back();
      stack.pop_back();
      to->mark_ = ToMark(from.Mark());
      to->tag_ = from.Tag();
      switch (from.Type()) {
        case YAML::NodeType::Scalar:
          to->kind_ = Node::Kind::kScalar;
          to->scalar_ = from.Scalar();
          break;
        case YAML::NodeType::Sequence: {
          to->kind_ = Node::Kind::kSequence;
          to->items_.resize(from.size());
          size_t i = 0;
          for (auto it = from.begin(); it != from.end(); ++it, ++i) {
            stack.emplace_back(*it, &to->items_[i]);
          }
          break;
        }
        case YAML::NodeType::Map: {
          to->kind_ = Node::Kind::kMap;
          to->entries_.resize(from.size());
          size_t i = 0;
          for (auto it = from.begin(); it != from.end(); ++it, ++i) {
            stack.emplace_back(it->first, &to->entries_[i].first);
            stack.emplace_back(it->second, &to->entries_[i].second);
          }
          break;
        }
        default:
          to->kind_ = Node::Kind::kNull;
          break;
      }
    }
    return root;
  }
};

ParseResult ParseYaml(std::string_view text, const ParseOptions& options) {
  ParseResult result;
  const auto fail = [&result](ParseError error) {
    result.errors.push_back(std::move(error));
    return std::move(result);
  };
  const std::string owned(text);
  YAML::Node root;
  try {
    // yaml-cpp 0.7's LoadAll never returns on a stray ',' at document level:
    // the parser emits an empty document without consuming the token, forever
    // (jbeder/yaml-cpp#1040, fixed after 0.7). So documents are counted here,
    // at most two, and a document that starts where the previous one did is
    // a syntax error; the tree then comes from Load.
    std::vector<YAML::Mark> starts;
    {
      std::istringstream stream(owned);
      YAML::Parser parser(stream);
      ShapeCheck check(options, &starts);
      const size_t wanted = options.single_document ? 2 : 1;
      while (starts.size() < wanted && !check.problem &&
             parser.HandleNextDocument(check)) {
      }
      if (check.problem) {
        ParseError error = std::move(*check.problem);
        if (error.restarts_in_place) {
          const int at = error.mark.pos;
          error.message = absl::StrCat(
              "unexpected ", at >= 0 && static_cast<size_t>(at) < text.size()
                                 ? QuoteChar(text[at])
                                 : "token");
        }
        return fail(std::move(error));
      }
    }
    result.has_document = !starts.empty();
    if (result.has_document) root = YAML::Load(owned);
  } catch (const YAML::DeepRecursion& e) {
    return fail(ParseError{.kind = ParseError::Kind::kTooDeep,
                           .mark = ToMark(e.mark),
                           .message = e.msg,
                           .depth = static_cast<int>(e.depth())});
  } catch (const YAML::ParserException& e) {
    return fail(ParseError{.kind = ParseError::Kind::kSyntax,
                           .mark = ToMark(e.mark),
                           .message = e.msg});
  } catch (const YAML::Exception& e) {
    return fail(ParseError{.kind = ParseError::Kind::kOther,
                           .mark = ToMark(e.mark),
                           .message = e.msg});
  }
  if (!result.has_document) return result;
  if (std::optional<ParseError> error =
          CheckExpandedSize(root, options.max_nodes)) {
    return fail(std::move(*error));
  }
  result.root = TreeBuilder::Build(root);
  return result;
}

ParseResult ReadYamlFile(const std::string& path, const ParseOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ParseResult result;
    result.errors.push_back(
        ParseError{.kind = ParseError::Kind::kUnreadable,
                   .message = absl::StrCat("cannot open ", path)});
    return result;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseYaml(text.str(), options);
}

std::string FormatAt(absl::string_view file, const Mark& mark,
                     absl::string_view field, absl::string_view message) {
  return field.empty()
             ? absl::StrCat(file, ":", mark.Line(), ":", mark.Column(), ": ",
                            message)
             : absl::StrCat(file, ":", mark.Line(), ":", mark.Column(), ": ",
                            field, ": ", message);
}

}  // namespace benchfleet::yaml
