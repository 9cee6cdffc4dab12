#pragma once
// Small RAII wrappers over the HDF5 C API (files, groups, datasets, attributes)
// that move data to and from torch tensors.
//
// Conventions
//   * Every failure throws tessera::DataError whose message starts with
//     "<file>: <key>: " and says what went wrong, followed by HDF5's own
//     innermost message in parentheses. HDF5's automatic printing of its error
//     stack to stderr is switched off (per thread: the library is thread-safe
//     and keeps one error stack per thread).
//   * Keys are HDF5 paths. Location methods take a path relative to the
//     location (or absolute, starting with '/'); error messages always show the
//     absolute key, e.g. "/entry_1/instrument_1/detector_1/data".
//   * Element types, on disk (little-endian) <-> torch:
//       float16/32 -> float32, float64 -> float64,
//       int8/16/32/64 -> same, uint8 -> uint8, uint16 -> int32, uint32/64 -> int64,
//       bool <-> h5py's enum int8 {FALSE = 0, TRUE = 1},
//       complex64/128 <-> h5py's compound {r, i} of float32/float64
//         (compounds named {real, imag} or {re, im} are read as complex too).
//     Writing takes the tensor's dtype unless DatasetOptions::file_type says
//     otherwise (e.g. an int64 mask stored as uint32); HDF5 converts.
//   * Tensors are row-major; non-contiguous or non-CPU tensors are copied.
#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace tessera::h5 {

// Switches off HDF5's printing of error stacks for the calling thread.
// Idempotent and cheap; every wrapper calls it, so callers rarely need to.
void silence_error_printing();

// The innermost description on the calling thread's HDF5 error stack ("" when
// empty), then clears the stack.
std::string take_error_message();

// Element type of a dataset or attribute, as tessera sees it.
enum class Kind { integer, unsigned_integer, floating, complex, boolean, string, other };

// The on-disk element types the wrappers can write.
enum class FileType { int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64, boolean, complex64, complex128 };

struct TypeInfo {
  Kind kind = Kind::other;
  size_t size = 0;          // bytes per element
  std::string name;         // "uint16", "float32", "complex64", "bool", "string", "compound {a, b}", ...
  // The dtype read() returns for this type (undefined optional for string / other).
  std::optional<torch::ScalarType> torch_dtype;
};

// Owns one HDF5 identifier (file, group, dataset, attribute, dataspace,
// datatype, property list) and releases it on destruction. Move-only.
class Handle {
 public:
  Handle() = default;
  // Takes ownership of id (which must be valid: >= 0).
  explicit Handle(hid_t id) : id_(id) {}
  Handle(Handle&& o) noexcept : id_(o.id_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();  // releases now (errors ignored)
  // Gives up ownership: returns the id and leaves this handle empty.
  hid_t release() {
    hid_t id = id_;
    id_ = H5I_INVALID_HID;
    return id;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

class Dataset;
class Group;

// Options of Location::create_dataset.
struct DatasetOptions {
  std::optional<FileType> file_type;   // default: from the tensor's dtype
  std::vector<int64_t> chunk;          // chunk shape (same rank); empty: contiguous
  int gzip_level = 0;                  // 1..9 compresses (needs chunk; default chunk = one row of axis 0)
};

// Something named inside a file: the file itself or a group, dataset, attribute.
class Object {
 public:
  const std::string& file() const { return file_; }
  const std::string& key() const { return key_; }  // absolute HDF5 path ("/" for the file)
  hid_t id() const { return handle_.get(); }
  bool valid() const { return handle_.valid(); }

  // Attributes of this object (of the root group for a File).
  bool has_attribute(const std::string& name) const;
  std::string read_string_attribute(const std::string& name) const;
  double read_double_attribute(const std::string& name) const;
  void write_attribute(const std::string& name, const std::string& value) const;  // variable-length UTF-8
  void write_attribute(const std::string& name, double value) const;
  void write_attribute(const std::string& name, int64_t value) const;
  void write_attribute(const std::string& name, int value) const { write_attribute(name, static_cast<int64_t>(value)); }
  void write_attribute(const std::string& name, const char* value) const { write_attribute(name, std::string(value)); }

  // "<file>: <key>: <what>" with HDF5's own message appended when there is one.
  [[noreturn]] void fail(const std::string& what) const;
  // Same for a key below this object (relative or absolute path).
  [[noreturn]] void fail(const std::string& path, const std::string& what) const;

 protected:
  Object() = default;
  Object(Handle handle, std::string file, std::string key)
      : handle_(std::move(handle)), file_(std::move(file)), key_(std::move(key)) {}
  std::string full_key(const std::string& path) const;

  Handle handle_;
  std::string file_;
  std::string key_;
};

// A file or a group: where links to groups and datasets live.
class Location : public Object {
 public:
  // True when every component of path exists and resolves to an object
  // (a dangling soft link gives false).
  bool exists(const std::string& path) const;
  bool is_group(const std::string& path) const;
  bool is_dataset(const std::string& path) const;
  // True when path is a link whose target does not exist.
  bool is_dangling_link(const std::string& path) const;
  // Names of the links directly in this location (sorted by name).
  std::vector<std::string> children() const;

  Group group(const std::string& path) const;            // opens; throws when missing
  Group require_group(const std::string& path) const;    // opens or creates (with parents)
  Dataset dataset(const std::string& path) const;        // opens; throws when missing

  // Creates a dataset holding the tensor (intermediate groups are created).
  Dataset create_dataset(const std::string& path, const torch::Tensor& data,
                         const DatasetOptions& options = {}) const;
  // Scalar (rank 0) datasets, as h5py writes f["x"] = 1.5.
  Dataset write_scalar(const std::string& path, double value) const;
  Dataset write_scalar(const std::string& path, int64_t value) const;
  Dataset write_scalar(const std::string& path, int value) const;
  Dataset write_string(const std::string& path, const std::string& value) const;
  // Soft link at path pointing to target (an absolute path, which need not exist yet).
  void create_soft_link(const std::string& path, const std::string& target) const;
  // Removes the link at path (the object goes when nothing else links to it).
  void remove(const std::string& path) const;

 protected:
  using Object::Object;
};

class Group : public Location {
 public:
  Group() = default;

 private:
  friend class Location;
  using Location::Location;
};

class File : public Location {
 public:
  enum class Mode { read_only, read_write };
  File() = default;
  // Opens an existing file. Distinguishes, in the message: missing file,
  // directory, not an HDF5 file, and truncated / damaged HDF5 file.
  static File open(const std::string& path, Mode mode = Mode::read_only);
  // Creates (truncating) a file.
  static File create(const std::string& path);
  // Flushes and closes now, reporting failures (a full disk shows up here).
  void close();
  void flush() const;

 private:
  using Location::Location;
};

class Dataset : public Object {
 public:
  Dataset() = default;

  std::vector<int64_t> shape() const;
  int64_t rank() const { return static_cast<int64_t>(shape().size()); }
  int64_t numel() const;
  TypeInfo type() const;

  // Compression filters the data need that this HDF5 library cannot apply
  // (e.g. "bitshuffle (filter 32008)" without the plugin); empty when readable.
  std::vector<std::string> unavailable_filters() const;

  // The whole dataset in its natural dtype (see the table at the top).
  torch::Tensor read() const;
  // The whole dataset converted to dtype (numeric conversions by HDF5;
  // real -> complex and anything -> bool by torch; complex -> real throws).
  torch::Tensor read(torch::ScalarType dtype) const;
  // Rows [begin, end) of axis 0 with one hyperslab, converted to dtype.
  torch::Tensor read_rows(int64_t begin, int64_t end, torch::ScalarType dtype) const;
  // Same, into out: a contiguous CPU tensor of shape (end - begin, rest of shape).
  void read_rows_into(int64_t begin, int64_t end, torch::Tensor& out) const;
  // A dataset with exactly one element (rank 0 or any shape of size 1) as a number.
  double read_scalar() const;
  // A string dataset (fixed or variable length, scalar or one element).
  std::string read_string() const;
  // Overwrites rows [begin, begin + data.size(0)) of axis 0 (same trailing shape).
  void write_rows(int64_t begin, const torch::Tensor& data) const;

 private:
  friend class Location;
  using Object::Object;
};

// "1 × 2 × 3" (or "scalar").
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace tessera::h5
