#include "controller/store/migrations.h"

#include <iterator>
#include <utility>

namespace benchfleet {
namespace {

// Times are BIGINT microseconds since the Unix epoch; booleans are INTEGER 0/1;
// JSON is TEXT; attempts.seed holds the uint64 seed reinterpreted as a
// two's-complement BIGINT.
constexpr std::string_view kPlaceholderId = "{{ID}}";
// A BRIN index on PostgreSQL, an ordinary (b-tree) one on SQLite.
constexpr std::string_view kPlaceholderBrin = "{{BRIN}}";
constexpr std::string_view kPlaceholderBrinOptions = "{{BRIN_OPTIONS}}";

constexpr std::string_view kSchemaMigrations =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY,"
    " applied_at BIGINT NOT NULL)";

constexpr std::string_view kMigration1[] = {
    "CREATE TABLE experiments ("
    " id {{ID}},"
    " number BIGINT NOT NULL,"
    " name TEXT NOT NULL,"
    " campaign TEXT NOT NULL,"
    " state TEXT NOT NULL,"
    " state_reason TEXT NOT NULL,"
    " spec_yaml TEXT NOT NULL,"
    " spec_path TEXT NOT NULL,"
    " workdir TEXT NOT NULL,"
    " required_labels_json TEXT NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " max_attempts INTEGER NOT NULL,"
    " submitted_by TEXT NOT NULL,"
    " created_at BIGINT NOT NULL,"
    " updated_at BIGINT NOT NULL,"
    " report_json TEXT NOT NULL,"
    " report_text TEXT NOT NULL,"
    " UNIQUE (campaign, number))",
    "CREATE INDEX experiments_state_idx ON experiments (state, id)",

    "CREATE TABLE attempts ("
    " id {{ID}},"
    " experiment_id BIGINT NOT NULL REFERENCES experiments (id),"
    " agent_id TEXT NOT NULL,"
    " lease_token TEXT NOT NULL UNIQUE,"
    " state TEXT NOT NULL,"
    " seed BIGINT NOT NULL,"
    " reason TEXT NOT NULL,"
    " environment_json TEXT NOT NULL,"
    " started_at BIGINT NOT NULL,"
    " ended_at BIGINT)",  // NULL while running
    "CREATE INDEX attempts_experiment_idx ON attempts (experiment_id)",
    "CREATE INDEX attempts_state_idx ON attempts (state)",

    "CREATE TABLE step_results ("
    " attempt_id BIGINT NOT NULL REFERENCES attempts (id),"
    " step_seq BIGINT NOT NULL,"
    " kind TEXT NOT NULL,"
    " variant TEXT NOT NULL,"
    " input TEXT NOT NULL,"
    " wall_ns BIGINT NOT NULL,"
    " user_ns BIGINT NOT NULL,"
    " sys_ns BIGINT NOT NULL,"
    " max_rss_bytes BIGINT NOT NULL,"
    " exit_code INTEGER NOT NULL,"
    " term_signal INTEGER NOT NULL,"
    " timed_out INTEGER NOT NULL,"
    " output_digest TEXT NOT NULL,"
    " metrics_json TEXT NOT NULL,"
    " error TEXT NOT NULL,"
    " finished_at BIGINT NOT NULL,"
    " UNIQUE (attempt_id, step_seq))",

    "CREATE TABLE verdicts ("
    " id {{ID}},"
    " experiment_id BIGINT NOT NULL REFERENCES experiments (id),"
    " attempt_id BIGINT NOT NULL REFERENCES attempts (id),"
    " variant TEXT NOT NULL,"
    " verdict TEXT NOT NULL,"
    " reason TEXT NOT NULL,"
    // VerdictRecord::change; "change" is a keyword in some SQL dialects.
    " relative_change DOUBLE PRECISION NOT NULL,"
    " detail_json TEXT NOT NULL)",
    "CREATE INDEX verdicts_experiment_idx ON verdicts (experiment_id)",

    "CREATE TABLE agents ("
    " id TEXT PRIMARY KEY,"
    " hostname TEXT NOT NULL,"
    " labels_json TEXT NOT NULL,"
    " facts_json TEXT NOT NULL,"
    " state TEXT NOT NULL,"
    " cordoned INTEGER NOT NULL,"
    " last_seen BIGINT NOT NULL)",
};

// Host probe readings (store.h SampleRecord), the table written most often.
// Kept cheap to insert into (docs/perf/pg-ingest.md): no foreign key to
// attempts (a key check is a per-row trigger on the ingest path, and samples
// are telemetry that retention removes on its own schedule), no id column, an
// index on attempt_id alone (PostgreSQL deduplicates its equal keys; readers
// sort one attempt's rows by time) and, on PostgreSQL, a BRIN index for
// retention by taken_at: samples arrive in time order, so block ranges and
// times correlate, and a BRIN index costs next to nothing per row. PgStore
// writes rows in COPY's binary format, which names no types: a migration that
// changes a column's type must change PutSampleRow in pg_store_history.cc with
// it.
constexpr std::string_view kMigration2[] = {
    "CREATE TABLE samples ("
    " attempt_id BIGINT NOT NULL,"
    " step_seq BIGINT NOT NULL,"
    " agent_id TEXT NOT NULL,"
    " taken_at BIGINT NOT NULL,"
    " cpu_util DOUBLE PRECISION NOT NULL,"
    " load1 DOUBLE PRECISION NOT NULL,"
    " mem_available_bytes DOUBLE PRECISION NOT NULL,"
    " min_freq_mhz DOUBLE PRECISION NOT NULL,"
    " max_cpu_temp_c DOUBLE PRECISION NOT NULL,"
    " max_gpu_temp_c DOUBLE PRECISION NOT NULL,"
    " gpu_util DOUBLE PRECISION NOT NULL,"
    " throttle_events BIGINT NOT NULL,"
    " competing_cpu DOUBLE PRECISION NOT NULL,"
    " detail_json TEXT NOT NULL)",
    "CREATE INDEX samples_attempt_idx ON samples (attempt_id)",
    "CREATE INDEX samples_taken_at_idx ON samples {{BRIN}}(taken_at)"
    "{{BRIN_OPTIONS}}",
};

// Read-only views for Grafana's PostgreSQL data source, and the role it logs in
// as. Times are timestamptz, durations seconds (double precision), so that
// Grafana's time-series queries need no conversion. Columns:
//
// v_runs — one row per measured run (step_results of kind 'measure'):
//   experiment_id, experiment_number, experiment (name), campaign, attempt_id,
//   agent_id, step_seq, variant, input, wall_s, user_s, sys_s, max_rss_bytes,
//   exit_code, term_signal, timed_out (boolean), output_digest, metrics_json,
//   finished_at; since migration 7 also host_flags, gate_wait_s, host_json.
// v_results — one row per attempt, variant and input, over its measured runs:
//   experiment_id, experiment_number, experiment, campaign, experiment_state,
//   attempt_id, agent_id, attempt_state, variant, input, runs, median_wall_s,
//   mean_wall_s, stddev_wall_s (NULL for one run), min_wall_s, max_wall_s,
//   max_rss_bytes, timed_out_runs, first_finished_at, last_finished_at.
// v_verdicts — one row per verdict: verdict_id, experiment_id,
//   experiment_number, experiment, campaign, attempt_id, agent_id, variant,
//   verdict ('KEEP', 'MAYBE', ...), relative_change (candidate/baseline - 1),
//   reason, detail_json, started_at (attempt start), decided_at (attempt end).
//
// The role benchfleet_grafana is NOLOGIN and may only read these views; give it
// a password to use it (ALTER ROLE benchfleet_grafana LOGIN PASSWORD '...').
// Creating a role needs CREATEROLE: without it, or when the role already exists
// (roles are cluster-wide), the migration carries on and the server sends a
// WARNING/NOTICE that PgStore logs. A later migration that changes a table
// these views read must drop and re-create the views.
constexpr std::string_view kMigration3Postgres[] = {
    "CREATE VIEW v_runs AS SELECT"
    " e.id AS experiment_id, e.number AS experiment_number,"
    " e.name AS experiment, e.campaign, a.id AS attempt_id, a.agent_id,"
    " r.step_seq, r.variant, r.input,"
    " r.wall_ns::double precision / 1e9 AS wall_s,"
    " r.user_ns::double precision / 1e9 AS user_s,"
    " r.sys_ns::double precision / 1e9 AS sys_s,"
    " r.max_rss_bytes, r.exit_code, r.term_signal,"
    " (r.timed_out <> 0) AS timed_out, r.output_digest, r.metrics_json,"
    " to_timestamp(r.finished_at::double precision / 1e6) AS finished_at"
    " FROM step_results r"
    " JOIN attempts a ON a.id = r.attempt_id"
    " JOIN experiments e ON e.id = a.experiment_id"
    " WHERE r.kind = 'measure'",

    "CREATE VIEW v_results AS SELECT"
    " e.id AS experiment_id, e.number AS experiment_number,"
    " e.name AS experiment, e.campaign, e.state AS experiment_state,"
    " a.id AS attempt_id, a.agent_id, a.state AS attempt_state,"
    " r.variant, r.input, count(*) AS runs,"
    " percentile_cont(0.5) WITHIN GROUP"
    " (ORDER BY r.wall_ns::double precision) / 1e9 AS median_wall_s,"
    " avg(r.wall_ns::double precision) / 1e9 AS mean_wall_s,"
    " stddev_samp(r.wall_ns::double precision) / 1e9 AS stddev_wall_s,"
    " min(r.wall_ns)::double precision / 1e9 AS min_wall_s,"
    " max(r.wall_ns)::double precision / 1e9 AS max_wall_s,"
    " max(r.max_rss_bytes) AS max_rss_bytes,"
    " count(*) FILTER (WHERE r.timed_out <> 0) AS timed_out_runs,"
    " to_timestamp(min(r.finished_at)::double precision / 1e6)"
    " AS first_finished_at,"
    " to_timestamp(max(r.finished_at)::double precision / 1e6)"
    " AS last_finished_at"
    " FROM step_results r"
    " JOIN attempts a ON a.id = r.attempt_id"
    " JOIN experiments e ON e.id = a.experiment_id"
    " WHERE r.kind = 'measure'"
    " GROUP BY e.id, a.id, r.variant, r.input",

    "CREATE VIEW v_verdicts AS SELECT"
    " v.id AS verdict_id, e.id AS experiment_id,"
    " e.number AS experiment_number, e.name AS experiment, e.campaign,"
    " v.attempt_id, a.agent_id, v.variant, v.verdict, v.relative_change,"
    " v.reason, v.detail_json,"
    " to_timestamp(a.started_at::double precision / 1e6) AS started_at,"
    " to_timestamp(a.ended_at::double precision / 1e6) AS decided_at"
    " FROM verdicts v"
    " JOIN experiments e ON e.id = v.experiment_id"
    " JOIN attempts a ON a.id = v.attempt_id",

    // Errors inside the block are caught per statement, so a controller whose
    // database user may not create roles or grant still migrates.
    R"sql(DO $bf$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles
             WHERE rolname = 'benchfleet_grafana') THEN
    RAISE NOTICE 'benchfleet: role benchfleet_grafana already exists; '
      'granting it read access to the dashboard views';
  ELSE
    BEGIN
      CREATE ROLE benchfleet_grafana NOLOGIN;
    EXCEPTION
      WHEN duplicate_object THEN
        NULL;  -- created at the same moment by another database's migration
      WHEN insufficient_privilege THEN
        RAISE WARNING 'benchfleet: skipped creating the read-only Grafana '
          'role benchfleet_grafana: the controller''s database user lacks '
          'CREATEROLE. To create it, a database administrator can run: '
          'CREATE ROLE benchfleet_grafana NOLOGIN; '
          'GRANT USAGE ON SCHEMA % TO benchfleet_grafana; '
          'GRANT SELECT ON v_results, v_verdicts, v_runs TO benchfleet_grafana',
          quote_ident(current_schema());
        RETURN;
    END;
  END IF;
  BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO benchfleet_grafana',
                   current_schema());
    GRANT SELECT ON v_results, v_verdicts, v_runs TO benchfleet_grafana;
  EXCEPTION
    WHEN insufficient_privilege THEN
      RAISE WARNING 'benchfleet: could not grant benchfleet_grafana read '
        'access to the dashboard views (%); a database administrator can run: '
        'GRANT USAGE ON SCHEMA % TO benchfleet_grafana; '
        'GRANT SELECT ON v_results, v_verdicts, v_runs TO benchfleet_grafana',
        SQLERRM, quote_ident(current_schema());
  END;
END
$bf$)sql",
};

// PostgreSQL cannot put a text value of more than ~2.7 KB into a btree index
// entry, and agent ids, lease tokens and campaign names may be longer (they
// must round-trip unchanged, DESIGN.md §7). So on PostgreSQL the unique keys
// over text index a 64-bit hash of it instead; every query that uses such a
// key also compares the text itself, so two values whose hashes collide are
// refused (a unique violation, or no row upserted), never merged. SQLite has
// no such limit and keeps migration 1's constraints.
constexpr std::string_view kMigration4Postgres[] = {
    "ALTER TABLE experiments DROP CONSTRAINT experiments_campaign_number_key",
    "CREATE UNIQUE INDEX experiments_campaign_number_key ON experiments"
    " (hashtextextended(campaign, 0), number)",
    "ALTER TABLE attempts DROP CONSTRAINT attempts_lease_token_key",
    "CREATE UNIQUE INDEX attempts_lease_token_key ON attempts"
    " (hashtextextended(lease_token, 0))",
    "ALTER TABLE agents DROP CONSTRAINT agents_pkey",
    "CREATE UNIQUE INDEX agents_id_key ON agents (hashtextextended(id, 0))",
};

// One row per PgStore connection (slot: a random id the connection draws).
// Each writing transaction first sets its connection's row to a token of its
// own, so that when the connection breaks during COMMIT the store can tell
// whether the transaction committed (pg_store.h). Rows are tiny and updated in
// place; the store prunes rows untouched for a week.
constexpr std::string_view kMigration5Postgres[] = {
    "CREATE TABLE commit_marks ("
    " slot BIGINT PRIMARY KEY,"
    " token BIGINT NOT NULL,"
    " marked_at BIGINT NOT NULL)"
    " WITH (fillfactor = 50)",
};

// History across campaigns (controller/history): the spec's `idea:`, the
// origin key of an experiment imported from a history file (NULL for one
// submitted here; unique, so a file imported twice adds nothing the second
// time) and the "DISCARDed before" flag shown in the report. History queries
// filter completed experiments by name or idea, oldest first. PostgreSQL cannot
// put text longer than ~2.7 KB into a btree entry (see migration 4), so there
// those indexes hold a 64-bit hash of the text and the queries compare the text
// too; origin keys are short (the history file reader bounds them).
constexpr std::string_view kMigration6[] = {
    "ALTER TABLE experiments ADD COLUMN idea TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE experiments ADD COLUMN origin TEXT",
    "ALTER TABLE experiments ADD COLUMN discarded_before TEXT NOT NULL "
    "DEFAULT ''",
    "CREATE UNIQUE INDEX experiments_origin_key ON experiments (origin)",
};
constexpr std::string_view kMigration6Sqlite[] = {
    "CREATE INDEX experiments_name_idx ON experiments (name, created_at, id)",
    "CREATE INDEX experiments_idea_idx ON experiments (idea, created_at, id)",
};
constexpr std::string_view kMigration6Postgres[] = {
    "CREATE INDEX experiments_name_idx ON experiments"
    " (hashtextextended(name, 0), created_at, id)",
    "CREATE INDEX experiments_idea_idx ON experiments"
    " (hashtextextended(idea, 0), created_at, id)",
};

// What the host did during each run (store.h StepResultRecord): the agent's
// host summary as a JSON object, the flags that disturbed the run as a JSON
// array of strings ('[]' = undisturbed; JSON so that any flag text
// round-trips) and the time the run waited for the host's gates. Rows from
// before this migration read as no summary, no flags and no wait. On
// PostgreSQL v_runs (migration 3) gains, at its end (CREATE OR REPLACE VIEW
// may only append columns, and keeps the view's grants):
//   host_flags (the flags joined by ',', '' = undisturbed), gate_wait_s,
//   host_json.
constexpr std::string_view kMigration7[] = {
    "ALTER TABLE step_results ADD COLUMN host_json TEXT NOT NULL DEFAULT '{}'",
    "ALTER TABLE step_results ADD COLUMN host_flags TEXT NOT NULL "
    "DEFAULT '[]'",
    "ALTER TABLE step_results ADD COLUMN gate_wait_ns BIGINT NOT NULL "
    "DEFAULT 0",
};
constexpr std::string_view kMigration7Postgres[] = {
    "CREATE OR REPLACE VIEW v_runs AS SELECT"
    " e.id AS experiment_id, e.number AS experiment_number,"
    " e.name AS experiment, e.campaign, a.id AS attempt_id, a.agent_id,"
    " r.step_seq, r.variant, r.input,"
    " r.wall_ns::double precision / 1e9 AS wall_s,"
    " r.user_ns::double precision / 1e9 AS user_s,"
    " r.sys_ns::double precision / 1e9 AS sys_s,"
    " r.max_rss_bytes, r.exit_code, r.term_signal,"
    " (r.timed_out <> 0) AS timed_out, r.output_digest, r.metrics_json,"
    " to_timestamp(r.finished_at::double precision / 1e6) AS finished_at,"
    " array_to_string(ARRAY(SELECT f.flag FROM json_array_elements_text("
    "r.host_flags::json) WITH ORDINALITY AS f (flag, n) ORDER BY f.n), ',')"
    " AS host_flags,"
    " r.gate_wait_ns::double precision / 1e9 AS gate_wait_s,"
    " r.host_json"
    " FROM step_results r"
    " JOIN attempts a ON a.id = r.attempt_id"
    " JOIN experiments e ON e.id = a.experiment_id"
    " WHERE r.kind = 'measure'",
};

// API tokens (common/model/token.h): only the SHA-256 of each token is kept;
// revoked_at is NULL while the token is valid. Grafana's role (migration 3)
// is granted the views only, so it cannot read this table.
constexpr std::string_view kMigration8[] = {
    "CREATE TABLE api_tokens ("
    " id {{ID}},"
    " user_name TEXT NOT NULL,"
    " role TEXT NOT NULL,"
    " token_sha256 TEXT NOT NULL UNIQUE,"
    " created_by TEXT NOT NULL DEFAULT '',"
    " created_at BIGINT NOT NULL,"
    " revoked_at BIGINT)",
};

// The commit each variant of an experiment with source.repo is measured at,
// resolved from its ref at submit (common/model/variant_source.h); `position`
// keeps the spec's variant order.
constexpr std::string_view kMigration9[] = {
    "CREATE TABLE experiment_sources ("
    " experiment_id BIGINT NOT NULL REFERENCES experiments (id),"
    " position INTEGER NOT NULL,"
    " variant TEXT NOT NULL,"
    " repo TEXT NOT NULL,"
    " ref TEXT NOT NULL,"
    " commit_id TEXT NOT NULL,"
    " PRIMARY KEY (experiment_id, position))",
};

// The source bundle (common/bundle) an experiment runs from, by SHA-256,
// with source.bundle; empty otherwise.
constexpr std::string_view kMigration10[] = {
    "ALTER TABLE experiments ADD COLUMN bundle_digest TEXT NOT NULL "
    "DEFAULT ''",
};

constexpr Migration kMigrations[] = {
    {1, "initial schema: experiments, attempts, step_results, verdicts, agents",
     kMigration1},
    {2, "host probe samples", kMigration2},
    {3,
     "read-only views and role for Grafana (PostgreSQL only)",
     {},
     kMigration3Postgres},
    {4,
     "unique keys over long text by hash (PostgreSQL only)",
     {},
     kMigration4Postgres},
    {5,
     "commit marks for connections lost during COMMIT (PostgreSQL only)",
     {},
     kMigration5Postgres},
    {6, "history: idea, origin and DISCARDed-before flag of experiments",
     kMigration6, kMigration6Postgres, kMigration6Sqlite},
    {7, "host summary, host flags and gate wait of step results", kMigration7,
     kMigration7Postgres},
    {8, "API tokens (hashed)", kMigration8},
    {9, "resolved commits of the variants of experiments with source.repo",
     kMigration9},
    {10, "the source bundle of experiments with source.bundle", kMigration10},
};

}  // namespace

std::span<const Migration> AllMigrations() { return kMigrations; }

absl::StatusOr<const Migration*> NextMigration(int64_t current, int target,
                                               const std::string& what) {
  const int latest = LatestSchemaVersion();
  if (current > latest) {
    return absl::FailedPreconditionError(
        what + " has schema version " + std::to_string(current) +
        " but this benchfleet build knows versions up to " +
        std::to_string(latest) +
        "; it was written by a newer benchfleet: upgrade this controller, or "
        "point it at another database");
  }
  if (current >= target) return nullptr;
  const Migration& migration = AllMigrations()[current];
  if (migration.version != current + 1) {
    return absl::InternalError("schema migrations are not numbered 1.." +
                               std::to_string(latest) + " without gaps");
  }
  return &migration;
}

int LatestSchemaVersion() {
  return kMigrations[std::size(kMigrations) - 1].version;
}

std::string_view SchemaMigrationsTableSql() { return kSchemaMigrations; }

std::vector<std::string> MigrationStatements(const Migration& migration,
                                             SqlDialect dialect) {
  // SQLite assigns ids to an INTEGER PRIMARY KEY (a rowid alias); PostgreSQL
  // needs an identity.
  const std::string_view id_type =
      dialect == SqlDialect::kSqlite
          ? "INTEGER PRIMARY KEY"
          : "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";
  const bool pg = dialect == SqlDialect::kPostgres;
  const std::pair<std::string_view, std::string_view> placeholders[] = {
      {kPlaceholderId, id_type},
      {kPlaceholderBrin, pg ? "USING brin " : ""},
      // New block ranges are summarized as they fill, not at the next VACUUM.
      {kPlaceholderBrinOptions, pg ? " WITH (autosummarize = on)" : ""},
  };
  std::vector<std::string> out;
  auto render = [&](std::string_view statement) {
    std::string sql(statement);
    for (const auto& [placeholder, text] : placeholders) {
      for (size_t pos = sql.find(placeholder); pos != std::string::npos;
           pos = sql.find(placeholder, pos + text.size())) {
        sql.replace(pos, placeholder.size(), text);
      }
    }
    out.push_back(std::move(sql));
  };
  for (std::string_view statement : migration.statements) render(statement);
  if (pg) {
    for (std::string_view statement : migration.postgres_only) {
      render(statement);
    }
  } else {
    for (std::string_view statement : migration.sqlite_only) render(statement);
  }
  return out;
}

}  // namespace benchfleet
