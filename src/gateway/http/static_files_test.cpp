#include "gateway/http/static_files.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace converge {
namespace {

namespace fs = std::filesystem;

class StaticFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/converge-static-XXXXXX";
    base_ = mkdtemp(tmpl);
    fs::create_directories(base_ / "web" / "assets");
    fs::create_directories(base_ / "web" / "data" / "files");
    write(base_ / "web" / "index.html", "<!doctype html>");
    write(base_ / "web" / "assets" / "app.js", "1");
    write(base_ / "web" / ".env", "SECRET=1");
    write(base_ / "web" / "data" / "converge.db", "db");
    write(base_ / "secret.txt", "secret");
    fs::create_symlink(base_ / "secret.txt", base_ / "web" / "out.txt");
    fs::create_symlink(base_ / "web" / "assets" / "app.js", base_ / "web" / "in.js");
    files_.emplace((base_ / "web").string(), (base_ / "web" / "data").string());
  }
  void TearDown() override { fs::remove_all(base_); }
  static void write(const fs::path& p, const char* text) { std::ofstream(p) << text; }

  Errc code(std::string_view path) {
    auto r = files_->resolve(path);
    return r ? Errc::internal : r.error().code;  // internal = "served"
  }

  fs::path base_;
  std::optional<StaticFiles> files_;
};

TEST_F(StaticFilesTest, ServesFilesInsideTheRootWithTheirType) {
  auto r = files_->resolve("/assets/app.js");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->mime, "text/javascript; charset=utf-8");
  EXPECT_EQ(fs::path(r->path), fs::canonical(base_ / "web" / "assets" / "app.js"));
  auto idx = files_->resolve("/");
  ASSERT_TRUE(idx);
  EXPECT_TRUE(idx->index);
  EXPECT_EQ(idx->mime, "text/html; charset=utf-8");
  auto link = files_->resolve("/in.js");  // a symlink that stays inside
  ASSERT_TRUE(link);
  EXPECT_EQ(link->mime, "text/javascript; charset=utf-8");
  auto spa = files_->resolve("/conversations/12");  // no extension: the app's index
  ASSERT_TRUE(spa);
  EXPECT_TRUE(spa->index);
  EXPECT_TRUE(files_->resolve("/%61ssets/app.js")) << "escapes of ordinary characters decode";
}

TEST_F(StaticFilesTest, MalformedPathsAreBadRequests) {
  for (const char* p :
       {"//etc/passwd", "/%2Fetc/passwd", "/%2fetc/passwd", "//proc/self/fd/3",
        "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd", "/assets/../../../etc/passwd",
        "/index.html%00.png", "/%5c..%5cetc%5cpasswd", "/a\\b", "/./index.html", "/assets//app.js",
        "/%ff%fe", "/%zz", "/%4", "relative", ""})
    EXPECT_EQ(code(p), Errc::bad_request) << p;
  EXPECT_EQ(code(std::string_view("/index.html\0.png", 16)), Errc::bad_request);
}

TEST_F(StaticFilesTest, NothingOutsideTheRootOrInsideTheDataDir) {
  EXPECT_EQ(code("/out.txt"), Errc::not_found) << "a symlink out of the root";
  EXPECT_EQ(code("/.env"), Errc::not_found) << "hidden files";
  EXPECT_EQ(code("/data/converge.db"), Errc::not_found) << "the data dir inside the root";
  EXPECT_EQ(code("/data/files"), Errc::not_found) << "a directory of the data dir is refused too";
  EXPECT_EQ(code("/assets"), Errc::internal) << "a directory of the root: the app's index";
  EXPECT_EQ(code("/missing.js"), Errc::not_found);
}

TEST(StaticFilesOff, NoRootServesNothingButStillRefusesMalformedPaths) {
  StaticFiles none("", "");
  EXPECT_FALSE(none.enabled());
  EXPECT_EQ(none.resolve("/").error().code, Errc::not_found);
  EXPECT_EQ(none.resolve("//etc/passwd").error().code, Errc::bad_request);
  EXPECT_TRUE(check_path("/api/v1/conversations", false));
  EXPECT_FALSE(check_path("/api/v1/%00", true));
  EXPECT_TRUE(check_path("/api/v1/a/../b", true));
  EXPECT_FALSE(check_path("/api/v1/a/../b", false));
}

}  // namespace
}  // namespace converge
