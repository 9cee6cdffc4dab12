#include "train/probe_starts.h"

#include "src/registry.h"

namespace tessera {
namespace {

Registry<ProbeStartInfo>& registry() {
  static Registry<ProbeStartInfo> r = [] {
    Registry<ProbeStartInfo> m("probe start");
    m.add({"parallax",
           "read the probe's defocus from the shift of the shadow image across the direct beam, else search",
           [](const ProbeStartContext& c) {
             if (!c.parallax_defocus()) c.search_defocus();
           }});
    m.add({"search", "try the defocus candidates", [](const ProbeStartContext& c) { c.search_defocus(); }});
    m.add({"focused", "the zero-phase probe", [](const ProbeStartContext&) {}});
    return m;
  }();
  return r;
}

}  // namespace

void register_probe_start(ProbeStartInfo info) { registry().add(std::move(info)); }
const ProbeStartInfo& probe_start_by_name(const std::string& name) { return registry().get(name); }
std::vector<std::string> probe_start_names() { return registry().names(); }

std::string probe_start_help() {
  std::string s;
  for (const auto& name : probe_start_names())
    s += (s.empty() ? "" : "; ") + name + ": " + probe_start_by_name(name).description;
  return s;
}

}  // namespace tessera
