// RedactUrl (controller/store/store.h): store URLs reach logs and messages only
// through it, so every form of password libpq accepts must come out as "***".
#include <string>

#include "controller/store/store.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace {

TEST(RedactUrlTest, UserInfoPassword) {
  EXPECT_EQ(RedactUrl("postgresql://bench:s3cret@db.lan:5432/benchfleet"),
            "postgresql://bench:***@db.lan:5432/benchfleet");
  EXPECT_EQ(RedactUrl("postgres://bench:p@ss@db/bf"),
            "postgres://bench:***@db/bf");
}

TEST(RedactUrlTest, PasswordQueryParameters) {
  EXPECT_EQ(
      RedactUrl("postgresql://bench@db/bf?sslmode=require&password=hunter2"),
      "postgresql://bench@db/bf?sslmode=require&password=***");
  EXPECT_EQ(RedactUrl("postgresql://bench@db/bf?password=a&password=b&x=1"),
            "postgresql://bench@db/bf?password=***&password=***&x=1");
}

TEST(RedactUrlTest, KeyValueConnectionStrings) {
  EXPECT_EQ(RedactUrl("host=db user=bench password=hunter2 dbname=bf"),
            "host=db user=bench password=*** dbname=bf");
  EXPECT_EQ(RedactUrl(R"(host=db password='it\'s a secret' dbname=bf)"),
            "host=db password=*** dbname=bf");
}

TEST(RedactUrlTest, UrlsWithoutPasswordsAreUnchanged) {
  for (const std::string url :
       {"postgresql://bench@db:5432/bf", "postgresql:///bf?host=/tmp",
        "sqlite:///var/lib/benchfleet/benchfleet.db",
        "sqlite::memory:", "postgresql://db/bf?password_file=/etc/bf/pw", ""}) {
    EXPECT_EQ(RedactUrl(url), url);
  }
}

}  // namespace
}  // namespace benchfleet
