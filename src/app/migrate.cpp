#include "app/migrate.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "base/crypto.hpp"
#include "store/copy.hpp"
#include "store/postgres/postgres_store.hpp"
#include "store/sqlite/sqlite_store.hpp"

namespace converge {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int usage(const std::string& why) {
  std::fprintf(stderr,
               "converge migrate: %s\n"
               "usage: converge migrate --from DATA_DIR --to postgresql://... [--files-to DIR] "
               "[--files-from DIR]\n",
               why.c_str());
  return 2;
}

int failed(const std::string& why) {
  std::fprintf(stderr, "converge migrate: %s\n", why.c_str());
  return 1;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The url as it may be printed: its password (user:password@, or password=) as ***.
std::string redacted(std::string url) {
  const auto scheme = url.find("://");
  if (scheme != std::string::npos) {
    const auto start = scheme + 3;
    const auto at = url.find('@', start);
    const auto slash = url.find('/', start);
    if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
      const auto colon = url.find(':', start);
      if (colon != std::string::npos && colon < at) url.replace(colon + 1, at - colon - 1, "***");
    }
  }
  for (auto p = url.find("password="); p != std::string::npos; p = url.find("password=", p + 1)) {
    const auto value = p + std::strlen("password=");
    const auto end = url.find_first_of("& ", value);
    url.replace(value, (end == std::string::npos ? url.size() : end) - value, "***");
  }
  return url;
}

// The blob layout of the service (service.cpp, store_file): <files_dir>/<2 hex>/<sha256 hex>.
bool content_addressed(const fs::path& rel) {
  auto parts = std::vector<fs::path>(rel.begin(), rel.end());
  if (parts.size() != 2) return false;
  const std::string dir = parts[0].string(), name = parts[1].string();
  if (name.size() != 64 || dir != name.substr(0, 2)) return false;
  for (char c : name)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Result<std::string> sha256_of_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return make_error(Errc::internal, "cannot read " + p.string());
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) h.update({buf.data(), static_cast<std::size_t>(in.gcount())});
  }
  if (in.bad()) return make_error(Errc::internal, "cannot read " + p.string());
  return h.final_hex();
}

Status fsync_path(const fs::path& p, int flags) {
  const int fd = ::open(p.c_str(), flags | O_CLOEXEC);
  if (fd < 0)
    return make_error(Errc::internal, "cannot open " + p.string() + ": " + strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return make_error(Errc::internal, "fsync " + p.string() + ": " + strerror(errno));
  return ok_status();
}

// Copies `from` to `to` through a temporary file in `tmp_dir`, durably (fsync, rename, fsync
// of the folder); returns the sha256 of what it copied, which the caller checks before the
// rename when `want_sha` is set (a blob whose bytes are not its name is not copied).
Result<std::string> copy_file(const fs::path& from, const fs::path& to, const fs::path& tmp_dir,
                              const std::string& want_sha) {
  std::ifstream in(from, std::ios::binary);
  if (!in) return make_error(Errc::internal, "cannot read " + from.string());
  const fs::path tmp = tmp_dir / (to.filename().string() + ".migrate-part");
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return make_error(Errc::internal, "cannot create " + tmp.string() + ": " + strerror(errno));
  Sha256 h;
  std::vector<char> buf(1 << 20);
  std::string error;
  while (error.empty() && in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<std::size_t>(in.gcount());
    h.update({buf.data(), n});
    for (std::size_t done = 0; done < n;) {
      const ssize_t w = ::write(fd, buf.data() + done, n - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        error = "cannot write " + tmp.string() + ": " + strerror(errno);
        break;
      }
      done += static_cast<std::size_t>(w);
    }
  }
  if (error.empty() && in.bad()) error = "cannot read " + from.string();
  if (error.empty() && ::fsync(fd) != 0) error = "fsync " + tmp.string() + ": " + strerror(errno);
  ::close(fd);
  std::error_code ec;
  const std::string sha = h.final_hex();
  if (error.empty() && !want_sha.empty() && sha != want_sha)
    error = "blob " + from.string() + " is damaged: its bytes hash to " + sha +
            ", not to its name. Restore it from a backup, or delete it (downloads of its file "
            "then fail), and migrate again";
  if (error.empty()) {
    fs::create_directories(to.parent_path(), ec);
    fs::rename(tmp, to, ec);
    if (ec) error = "cannot move " + tmp.string() + " to " + to.string() + ": " + ec.message();
  }
  if (!error.empty()) {
    fs::remove(tmp, ec);
    return make_error(Errc::internal, error);
  }
  if (auto st = fsync_path(to.parent_path(), O_RDONLY | O_DIRECTORY); !st) return st.error();
  return sha;
}

struct BlobReport {
  int64_t copied = 0;
  int64_t bytes = 0;
  int64_t already = 0;  // in the target already, with the right bytes (a migration run again)
  int64_t other = 0;    // files outside the blob layout, copied as they are
};

// <from>/** into <to>, except tmp/ (uploads in progress when the node stopped). Every blob's
// bytes are hashed on the way and must match its name.
Result<BlobReport> copy_blobs(const fs::path& from, const fs::path& to) {
  BlobReport r;
  std::error_code ec;
  fs::create_directories(to / "tmp", ec);
  if (ec)
    return make_error(Errc::internal,
                      "cannot create " + (to / "tmp").string() + ": " + ec.message());
  fs::recursive_directory_iterator it(from, ec), end;
  if (ec) return make_error(Errc::internal, "cannot list " + from.string() + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) return make_error(Errc::internal, "cannot list " + from.string() + ": " + ec.message());
    const fs::path rel = fs::relative(it->path(), from, ec);
    if (it.depth() == 0 && rel == "tmp") {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(ec)) continue;
    const fs::path dest = to / rel;
    const bool blob = content_addressed(rel);
    const std::string want = blob ? rel.filename().string() : "";
    if (blob && fs::exists(dest, ec)) {
      auto have = sha256_of_file(dest);
      if (have && have.value() == want) {
        ++r.already;
        continue;
      }
    }
    auto sha = copy_file(it->path(), dest, to / "tmp", want);
    if (!sha) return sha.error();
    if (blob) {
      ++r.copied;
      r.bytes += static_cast<int64_t>(it->file_size(ec));
    } else {
      ++r.other;
    }
  }
  return r;
}

// Hands the batches on, printing progress now and then and checking that every file's blob is
// where the nodes will look for it.
struct Progress {
  fs::path files_dir;
  Clock::time_point started = Clock::now();
  Clock::time_point last_print = Clock::now();
  StoreCounts done;
  std::vector<std::string> missing_blobs;
  int64_t missing = 0;

  Status on_batch(const StoreRows& b) {
    done.add(b);
    std::error_code ec;
    for (auto& f : b.files) {
      const fs::path blob = files_dir / f.sha256.substr(0, 2) / f.sha256;
      if (fs::exists(blob, ec)) continue;
      ++missing;
      if (missing_blobs.size() < 5) missing_blobs.push_back(f.id + " (" + f.name + ")");
    }
    if (Clock::now() - last_print > std::chrono::seconds(2)) {
      last_print = Clock::now();
      std::fprintf(stderr, "  ... %lld rows so far (%lld messages), %.0f s\n",
                   static_cast<long long>(done.total()), static_cast<long long>(done.messages),
                   seconds_since(started));
    }
    return ok_status();
  }
};

}  // namespace

int run_migrate(const MigrateArgs& args) {
  // The engines' info lines (schema versions applied) would be noise between the report's.
  spdlog::set_level(spdlog::level::warn);
  // --- the arguments, before anything is opened ---
  if (!args.unexpected.empty()) return usage("unexpected argument " + args.unexpected.front());
  if (args.from.empty()) return usage("--from DATA_DIR is required (the node's data dir)");
  if (args.to.empty()) return usage("--to postgresql://... is required");
  if (!args.to.starts_with("postgresql://") && !args.to.starts_with("postgres://"))
    return usage("--to " + redacted(args.to) + ": expected postgresql://...");
  std::error_code ec;
  if (!fs::is_directory(args.from, ec)) return usage(args.from + " is not a directory");
  const fs::path db = fs::path(args.from) / "converge.db";
  if (!fs::is_regular_file(db, ec))
    return usage("no converge.db in " + args.from + ": not a node's data dir");
  const fs::path files_from = fs::absolute(args.files_from.empty() ? fs::path(args.from) / "files"
                                                                   : fs::path(args.files_from));
  if (!args.files_from.empty() && !fs::is_directory(files_from, ec))
    return usage("--files-from " + args.files_from + " is not a directory");
  fs::path files_dir = files_from;  // where the cluster's nodes find the blobs
  bool copy = false;
  if (!args.files_to.empty()) {
    const fs::path to = fs::weakly_canonical(fs::absolute(args.files_to), ec);
    const fs::path from = fs::weakly_canonical(files_from, ec);
    auto [a, b] = std::mismatch(from.begin(), from.end(), to.begin(), to.end());
    auto [c, d] = std::mismatch(to.begin(), to.end(), from.begin(), from.end());
    if (to == from) {
      std::printf("--files-to is the node's files dir already: the blobs stay where they are\n");
    } else if (a == from.end() || c == to.end()) {
      return usage("--files-to " + args.files_to + " and the node's files dir " +
                   files_from.string() + " are inside one another");
    } else {
      files_dir = to;
      copy = true;
    }
  }

  std::printf(
      "Migrating the node's data in %s into %s.\n"
      "The node must be stopped: what it stored after the copy began would not be in the "
      "cluster.\n",
      fs::absolute(args.from).string().c_str(), redacted(args.to).c_str());
  std::fflush(stdout);
  const auto t0 = Clock::now();

  // --- both stores; the target must be empty before a single blob is copied ---
  SqliteOptions so;
  so.path = db.string();
  so.fail_if_in_use = true;  // a running node: refused, it would go on writing
  auto source = open_sqlite_store(so);
  if (!source) return failed("source: " + source.error().message);
  PostgresOptions po;
  po.url = args.to;
  auto target = open_postgres_store(po);
  if (!target) return failed("target " + redacted(args.to) + ": " + target.error().message);
  auto from_s = source.value()->open_session();
  if (!from_s) return failed("source: " + from_s.error().message);
  auto to_s = target.value()->open_session();
  if (!to_s) return failed("target: " + to_s.error().message);
  auto present = to_s.value()->count_rows();
  if (!present) return failed("target: " + present.error().message);
  if (present->total() != 0)
    return failed("the target database is not empty (" + describe_counts(present.value()) +
                  "): refusing to migrate into it. Migrate into a new, empty database, before "
                  "any node has started on it (an admin_user bootstrap adds a user). Nothing "
                  "was changed.");

  // --- the blobs first: copying them again is harmless, and the database then commits last ---
  if (copy) {
    if (!fs::is_directory(files_from, ec)) {
      std::printf("files: %s does not exist (nothing was uploaded): nothing to copy\n",
                  files_from.string().c_str());
      fs::create_directories(files_dir, ec);
    } else {
      const auto tf = Clock::now();
      auto blobs = copy_blobs(files_from, files_dir);
      if (!blobs)
        return failed("files: " + blobs.error().message + ". Nothing was copied to the database.");
      std::string extra;
      if (blobs->already) extra += ", " + std::to_string(blobs->already) + " there already";
      if (blobs->other) extra += ", " + std::to_string(blobs->other) + " other files as they are";
      std::printf(
          "files: %lld blobs (%.1f MB) copied from %s to %s in %.2f s, each one's sha256 "
          "checked%s\n",
          static_cast<long long>(blobs->copied), static_cast<double>(blobs->bytes) / 1e6,
          files_from.string().c_str(), files_dir.string().c_str(), seconds_since(tf),
          extra.c_str());
    }
  }

  // --- the rows, in one transaction ---
  Progress progress;
  progress.files_dir = files_dir;
  CopyOptions opts;
  opts.on_batch = [&progress](const StoreRows& b) { return progress.on_batch(b); };
  const auto tc = Clock::now();
  auto copied = copy_store(*from_s.value(), *to_s.value(), opts);
  const double copy_s = seconds_since(tc);
  if (!copied)
    return failed(copied.error().message +
                  ". The target database was left as it was (the copy is one transaction).");

  std::printf("rows copied in %.2f s (one transaction, committed):\n", copy_s);
  for (auto& [table, rows] : copied->by_table())
    std::printf("  %-14s %10lld\n", table.c_str(), static_cast<long long>(rows));
  std::printf("  %.0f messages/s; %.2f s in all\n",
              copy_s > 0 ? static_cast<double>(copied->messages) / copy_s : 0.0, seconds_since(t0));
  if (progress.missing > 0) {
    std::string names;
    for (auto& n : progress.missing_blobs) names += (names.empty() ? "" : ", ") + n;
    std::printf(
        "warning: %lld files have no blob in %s (%s%s): their downloads fail, as they did on "
        "the node\n",
        static_cast<long long>(progress.missing), files_dir.string().c_str(), names.c_str(),
        progress.missing > static_cast<int64_t>(progress.missing_blobs.size()) ? ", ..." : "");
  }
  std::printf(
      "\nDone. Start every node of the cluster on the database and on one shared files dir:\n"
      "  store = %s\n"
      "  files_dir = %s\n"
      "(config keys; or --store / --files-dir, CONVERGE_STORE / CONVERGE_FILES_DIR)\n"
      "%s"
      "Leave %s as it is until the cluster runs (it is your backup), and never start the old "
      "node on it again: what it stored would not reach the cluster.\n",
      redacted(args.to).c_str(), files_dir.string().c_str(),
      copy ? ""
           : "The blobs stayed where they were: every node must reach that folder (a shared "
             "mount), or copy them with --files-to.\n",
      db.string().c_str());
  return 0;
}

}  // namespace converge
