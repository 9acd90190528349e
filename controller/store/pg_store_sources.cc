// PgStore (pg_store.h): the resolved commits of variants (experiment_sources,
// migration 9).
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controller/store/pg_conn.h"
#include "controller/store/pg_rows.h"
#include "controller/store/pg_store.h"

namespace benchfleet {

using pg_internal::Query;
using pg_internal::Str;
using pg_internal::Txn;

namespace {

constexpr Query kExperimentExists{"bf_sources_experiment_exists",
                                  "SELECT 1 FROM experiments WHERE id = $1"};
constexpr Query kClearSources{
    "bf_clear_sources",
    "DELETE FROM experiment_sources WHERE experiment_id = $1"};
constexpr Query kInsertSource{
    "bf_insert_source",
    "INSERT INTO experiment_sources (experiment_id, position, variant, repo, "
    "ref, commit_id) VALUES ($1, $2, $3, $4, $5, $6)"};
constexpr Query kListSources{
    "bf_list_sources",
    "SELECT variant, repo, ref, commit_id FROM experiment_sources WHERE "
    "experiment_id = $1 ORDER BY position"};

}  // namespace

absl::Status PgStore::RecordExperimentSources(
    int64_t experiment_id, const std::vector<VariantSourceRecord>& sources) {
  return Transact(
      absl::StrCat("storing the commits of experiment ", experiment_id),
      TxnKind::kWrite, [&](Txn& txn) -> absl::Status {
        if (txn.Exec(kExperimentExists, experiment_id).empty()) {
          return absl::NotFoundError(
              absl::StrCat("no experiment with id ", experiment_id));
        }
        txn.Exec(kClearSources, experiment_id);
        for (size_t i = 0; i < sources.size(); ++i) {
          const VariantSourceRecord& s = sources[i];
          txn.Exec(kInsertSource, experiment_id, static_cast<int64_t>(i),
                   s.variant, s.repo, s.ref, s.commit);
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<std::vector<VariantSourceRecord>> PgStore::ListExperimentSources(
    int64_t experiment_id) {
  std::vector<VariantSourceRecord> out;
  RETURN_IF_ERROR(Transact(
      absl::StrCat("reading the commits of experiment ", experiment_id),
      TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.clear();
        for (const pqxx::row& row : txn.Exec(kListSources, experiment_id)) {
          VariantSourceRecord s;
          s.variant = Str(row["variant"]);
          s.repo = Str(row["repo"]);
          s.ref = Str(row["ref"]);
          s.commit = Str(row["commit_id"]);
          out.push_back(std::move(s));
        }
        return absl::OkStatus();
      }));
  return out;
}

}  // namespace benchfleet
