#pragma once
// One way to extend tessera: losses, optimisers and priors are each a
// Registry of named entries (an Entry has a `name`). A program adds its own
// with the register_* function of the kind (models/losses.h,
// train/optimizers.h, models/priors/native.h); adding under a known name
// replaces that entry. The tool's help lists the names registered.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "src/error.h"

namespace tessera {

template <typename Entry>
class Registry {
 public:
  // kind names an entry in messages ("loss"); hint ends the unknown-name message.
  explicit Registry(std::string kind, std::string hint = "") : kind_(std::move(kind)), hint_(std::move(hint)) {}

  void add(Entry entry) {
    TESSERA_REQUIRE(SettingsError, !entry.name.empty(), "a ", kind_, " needs a name to be registered");
    std::string name = entry.name;
    entries_.insert_or_assign(std::move(name), std::move(entry));
  }

  const Entry& get(const std::string& name) const {
    const auto it = entries_.find(name);
    TESSERA_REQUIRE(SettingsError, it != entries_.end(), "unknown ", kind_, " '", name, "'; choose one of: ",
                    listed(), hint_);
    return it->second;
  }

  bool contains(const std::string& name) const { return entries_.count(name) > 0; }

  std::vector<std::string> names() const {
    std::vector<std::string> v;
    for (const auto& entry : entries_) v.push_back(entry.first);
    return v;
  }

  // "a, b, c", for help texts and messages.
  std::string listed() const {
    std::string s;
    for (const auto& entry : entries_) s += (s.empty() ? "" : ", ") + entry.first;
    return s;
  }

 private:
  std::string kind_, hint_;
  std::map<std::string, Entry> entries_;
};

}  // namespace tessera
