#include "store/copy.hpp"

namespace converge {

namespace {

// Hands each exported batch to the target's import, counting what went in.
class ImportSink final : public StoreRowSink {
 public:
  ImportSink(StoreSession& to, const CopyOptions& opts) : to_(to), opts_(opts) {}

  Status write(const StoreRows& batch) override {
    if (auto st = to_.import_rows(batch); !st) return st;
    copied_.add(batch);
    if (opts_.on_batch) return opts_.on_batch(batch);
    return ok_status();
  }

  const StoreCounts& copied() const { return copied_; }

 private:
  StoreSession& to_;
  const CopyOptions& opts_;
  StoreCounts copied_;
};

}  // namespace

std::string describe_counts(const StoreCounts& c) {
  std::string out;
  for (auto& [table, rows] : c.by_table()) {
    if (rows == 0) continue;
    if (!out.empty()) out += ", ";
    out += std::to_string(rows) + " " + table;
  }
  return out.empty() ? "no rows" : out;
}

Result<StoreCounts> copy_store(StoreSession& from, StoreSession& to, const CopyOptions& opts) {
  if (auto st = to.begin(); !st) return st.error();
  auto fail = [&](const Error& e) -> Result<StoreCounts> {
    to.rollback();
    return e;
  };
  auto before = to.count_rows();
  if (!before) return fail(before.error());
  if (before->total() != 0)
    return fail(make_error(Errc::conflict, "the target store is not empty (" +
                                               describe_counts(before.value()) +
                                               "): a store is copied into an empty one only"));
  ImportSink sink(to, opts);
  if (auto st = from.export_all(sink, opts.batch); !st) return fail(st.error());
  if (auto st = to.import_finish(); !st) return fail(st.error());
  // What the target holds now is what the source handed over, table by table.
  auto after = to.count_rows();
  if (!after) return fail(after.error());
  if (!(after.value() == sink.copied()))
    return fail(make_error(Errc::internal,
                           "after the copy the target holds " + describe_counts(after.value()) +
                               ", but the source gave " + describe_counts(sink.copied())));
  if (auto st = to.commit(); !st) return st.error();
  return sink.copied();
}

}  // namespace converge
