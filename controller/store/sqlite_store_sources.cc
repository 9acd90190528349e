// SqliteStore (sqlite_store.h): the resolved commits of variants
// (experiment_sources, migration 9).
#include <sqlite3.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "controller/store/sqlite_db.h"
#include "controller/store/sqlite_store.h"

namespace benchfleet {

using sqlite_internal::Conn;
using sqlite_internal::Stmt;
using sqlite_internal::Transact;
using sqlite_internal::TxnKind;

absl::Status SqliteStore::RecordExperimentSources(
    int64_t experiment_id, const std::vector<VariantSourceRecord>& sources) {
  absl::MutexLock lock(&mu_);
  return Transact(
      db_, path_, TxnKind::kWrite,
      absl::StrCat("storing the commits of experiment ", experiment_id),
      [&](Conn& conn) -> absl::Status {
        ASSIGN_OR_RETURN(
            Stmt exists,
            conn.Prepare("SELECT 1 FROM experiments WHERE id = ?"));
        exists.BindInt(experiment_id);
        ASSIGN_OR_RETURN(bool found, exists.Step());
        if (!found) {
          return absl::NotFoundError(
              absl::StrCat("no experiment with id ", experiment_id));
        }
        ASSIGN_OR_RETURN(
            Stmt clear,
            conn.Prepare(
                "DELETE FROM experiment_sources WHERE experiment_id = ?"));
        clear.BindInt(experiment_id);
        RETURN_IF_ERROR(clear.Run());
        for (size_t i = 0; i < sources.size(); ++i) {
          const VariantSourceRecord& s = sources[i];
          ASSIGN_OR_RETURN(
              Stmt insert,
              conn.Prepare("INSERT INTO experiment_sources (experiment_id, "
                           "position, variant, repo, ref, commit_id) VALUES "
                           "(?, ?, ?, ?, ?, ?)"));
          insert.BindInt(experiment_id)
              .BindInt(static_cast<int64_t>(i))
              .BindText(s.variant)
              .BindText(s.repo)
              .BindText(s.ref)
              .BindText(s.commit);
          RETURN_IF_ERROR(insert.Run());
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<std::vector<VariantSourceRecord>>
SqliteStore::ListExperimentSources(int64_t experiment_id) {
  std::vector<VariantSourceRecord> out;
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(Transact(
      db_, path_, TxnKind::kRead,
      absl::StrCat("reading the commits of experiment ", experiment_id),
      [&](Conn& conn) -> absl::Status {
        out.clear();
        ASSIGN_OR_RETURN(
            Stmt stmt,
            conn.Prepare("SELECT variant, repo, ref, commit_id FROM "
                         "experiment_sources WHERE experiment_id = ? ORDER BY "
                         "position"));
        stmt.BindInt(experiment_id);
        for (;;) {
          ASSIGN_OR_RETURN(bool row, stmt.Step());
          if (!row) return absl::OkStatus();
          VariantSourceRecord s;
          s.variant = stmt.Text("variant");
          s.repo = stmt.Text("repo");
          s.ref = stmt.Text("ref");
          s.commit = stmt.Text("commit_id");
          out.push_back(std::move(s));
        }
      }));
  return out;
}

}  // namespace benchfleet
