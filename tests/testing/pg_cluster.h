// PgCluster: a throwaway PostgreSQL server for tests and benchmarks — the
// store conformance suite (tests/controller/store_test.cc) and the ingest
// benchmark (bench/pg_ingest_bench.cc) start one, so that CI needs nothing but
// the Debian `postgresql` package installed.
//
// Start() runs the server binaries found under /usr/lib/postgresql/*/bin (the
// newest version; BENCHFLEET_PG_BIN names another directory): `initdb` into a
// new temporary directory, then `pg_ctl start` with the server listening only
// on a Unix socket in that directory (listen_addresses = '', no TCP port), and
// creates the database "benchfleet". PostgreSQL refuses to run as root, so when
// the caller is root (as in CI) every server command runs as the `postgres`
// system user that the Debian package creates (a forked child drops to it
// before exec), and the directory is owned by that user. Authentication on the
// socket is `trust`, except for lines added with PgClusterOptions::hba_lines.
// Server settings are PostgreSQL's defaults (fsync and synchronous_commit on).
// The destructor stops the server (immediate mode: the data is thrown away)
// and removes the directory.
//
// A test program killed before its destructors run (a CI timeout) leaves its
// server running; its directory's owner.pid names the program, and
// `pg_ctl stop -D <dir>/data -m immediate` (as the postgres user when root)
// followed by removing the directory cleans it up.
//
// Missing binaries are an error with a clear message, never a silent skip.
//
// Not thread-safe; externally synchronized — except Psql, which several
// threads may call at once (a test holds a lock in one psql session while it
// watches from another). A PgStore connected to the cluster may be used from
// any thread.
#ifndef BENCHFLEET_TESTS_TESTING_PG_CLUSTER_H_
#define BENCHFLEET_TESTS_TESTING_PG_CLUSTER_H_

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace benchfleet::testing {

struct PgClusterOptions {
  // pg_hba.conf lines placed before the default "local all all trust", e.g.
  // "local all bench_pw scram-sha-256" to test password authentication.
  std::vector<std::string> hba_lines;
  // Extra postgresql.conf lines ("log_min_messages = debug1").
  std::vector<std::string> settings;
};

class PgCluster {
 public:
  // Creates, starts and prepares a cluster (a few seconds). Fails with a
  // message saying what to install or fix: FailedPrecondition when the
  // binaries or the `postgres` user are missing, Internal when a server
  // command fails (its output is in the message).
  static absl::StatusOr<std::unique_ptr<PgCluster>> Start(
      const PgClusterOptions& options = {});

  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  // A libpq URL for the database "benchfleet" as the superuser "postgres":
  // postgresql:///benchfleet?host=<socket dir>&port=<port>&user=postgres
  std::string url() const { return UrlFor("benchfleet"); }
  // The same for another database and, optionally, another user.
  std::string UrlFor(const std::string& dbname,
                     const std::string& user = "postgres") const;

  // Creates a database (name: letters, digits and '_' only) and returns its
  // URL.
  absl::StatusOr<std::string> CreateDatabase(const std::string& name);

  // Runs `sql` with psql as the superuser in database `dbname`, stopping at
  // the first error; returns what psql printed (unaligned, tuples only).
  absl::StatusOr<std::string> Psql(const std::string& dbname,
                                   const std::string& sql);

  // `pg_ctl restart`; with `immediate`, -m immediate: the server stops
  // without a checkpoint, every connection breaks, and the restarted server
  // runs crash recovery. Returns once the server accepts connections again.
  absl::Status Restart(bool immediate);

  // "PostgreSQL 15.18 (Debian 15.18-0+deb12u1)" — `postgres --version`.
  const std::string& version() const { return version_; }
  const std::string& socket_dir() const { return dir_; }
  // The running server's process id (from postmaster.pid); its backends and
  // background workers are its children. For measuring the server's CPU use.
  absl::StatusOr<pid_t> PostmasterPid() const;
  int port() const { return port_; }

 private:
  PgCluster() = default;

  // Runs bin_dir_/argv[0] with the rest of argv, as the cluster's owner;
  // stdout goes to `out` when given. Internal error with the command's output
  // unless it exits 0.
  absl::Status Run(const std::vector<std::string>& argv,
                   std::string* out = nullptr);

  std::string bin_dir_;   // .../bin of the PostgreSQL installation
  std::string dir_;       // temporary directory: socket, log, data/
  std::string data_dir_;  // dir_/data
  std::string log_path_;  // dir_/server.log
  std::string version_;
  int port_ = 5432;
  bool drop_privileges_ = false;  // running as root: run as `postgres`
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool running_ = false;
  std::atomic<int> command_count_{0};  // names the output files of Run
};

}  // namespace benchfleet::testing

#endif  // BENCHFLEET_TESTS_TESTING_PG_CLUSTER_H_
