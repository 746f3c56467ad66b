// Custom quantization specs read from a JSON file (`--quant-spec FILE.json`, README "Custom
// progressive specs") and the scheme value the pipeline carries: a built-in scheme of the table
// (kernels/schemes.h) or such a spec. Owns the file format, its checks (every error names the
// file and the JSON path), the canonical §6.3 tensor-spec objects the exported config writes, and
// the one parser of a scheme argument (a name or a spec file).
// Depends on kernels/schemes.h and nlohmann; no checkpoint or job code.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "kernels/schemes.h"

namespace shardquant {

using ordered_json = nlohmann::ordered_json;

// A spec file, checked and canonicalized.
struct custom_spec {
  std::string name;                      // "name" of the file, else the file name without ".json"
  std::string path;                      // the file as given
  weight_scheme kernel{scheme_id::fp8};  // what the kernels run
  ordered_json weight;                   // exported `weight`: one 17-key object or a list of two
  ordered_json input_tensors;            // exported `input_tensors`: a 17-key object or null
  // The canonical spec as one line (name, weight, input_tensors): what a resumed run must match.
  [[nodiscard]] std::string fingerprint() const;
};

// Reads and checks a spec file; throws usage_error "FILE: JSON.PATH: reason".
[[nodiscard]] custom_spec read_quant_spec(const std::string& path);
// The same for text already read (`path` only names it in errors).
[[nodiscard]] custom_spec parse_quant_spec(std::string_view text, const std::string& path);
// Whether a scheme argument names a spec file rather than a built-in scheme (it ends in ".json").
[[nodiscard]] bool is_quant_spec_file(std::string_view scheme_arg) noexcept;

// The scheme of a layer as the pipeline carries it: a built-in scheme, or a custom spec.
struct quant_scheme {
  scheme_id id = scheme_id::mxfp4;            // meaningful when custom is null
  std::shared_ptr<const custom_spec> custom;  // shared by every part that uses it

  quant_scheme() = default;
  quant_scheme(scheme_id s) : id(s) {}  // NOLINT(google-explicit-constructor)
  explicit quant_scheme(std::shared_ptr<const custom_spec> c) : custom(std::move(c)) {}

  [[nodiscard]] weight_scheme kernel() const { return custom ? custom->kernel : weight_scheme(id); }
  operator weight_scheme() const { return kernel(); }  // NOLINT(google-explicit-constructor)
  // The built-in name, or the spec's name.
  [[nodiscard]] std::string_view name() const noexcept {
    return custom ? std::string_view(custom->name) : info(id).name;
  }
  // Orders schemes for reports: built-ins in table order, then custom specs by name.
  [[nodiscard]] bool before(const quant_scheme& o) const noexcept;

  friend bool operator==(const quant_scheme& a, const quant_scheme& b) noexcept {
    return a.custom == b.custom && (a.custom || a.id == b.id);
  }
  friend bool operator==(const quant_scheme& a, scheme_id b) noexcept {
    return !a.custom && a.id == b;
  }
};

// The one parser of a scheme argument, used by the CLI (--scheme, --layer-scheme), the C++ API's
// options and so the Python module: a built-in name or alias of the scheme table, or a spec file
// ending in ".json" (read and checked). Throws usage_error with scheme_name_error()'s wording
// ("unknown scheme 'x' (known: ...)", "scheme 'mx6' is refused: ...") or the spec file's errors.
[[nodiscard]] quant_scheme parse_scheme_arg(const std::string& arg);

}  // namespace shardquant
