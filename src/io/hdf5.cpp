#include "src/io/hdf5.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "src/error.h"

namespace tessera::h5 {

// ---------------------------------------------------------------- errors ---

void silence_error_printing() {
  // No library shutdown at exit: after a failed write (a full disk) a file's
  // metadata cache stays dirty, and HDF5's atexit handler, flushing it again,
  // crashed (SIGSEGV after the error message). Every file tessera opens is
  // closed by its handle; the kernel closes whatever is left. Effective only
  // before the library's first use, which this function precedes.
  static const bool no_atexit = H5dont_atexit() >= 0;
  (void)no_atexit;
  thread_local bool silenced = false;
  if (!silenced) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    silenced = true;
  }
}

namespace {

herr_t collect_error(unsigned /*n*/, const H5E_error2_t* err, void* data) {
  auto* messages = static_cast<std::vector<std::string>*>(data);
  if (err && err->desc && *err->desc) messages->emplace_back(err->desc);
  return 0;
}

}  // namespace

std::string take_error_message() {
  std::vector<std::string> messages;  // innermost first
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &messages);
  H5Eclear2(H5E_DEFAULT);
  if (messages.empty()) return "";
  if (messages.size() == 1 || messages.back() == messages.front()) return messages.front();
  return messages.back() + ": " + messages.front();
}

namespace {

[[noreturn]] void throw_error(const std::string& file, const std::string& key, const std::string& what) {
  std::string hdf5 = take_error_message();
  std::string message = file + ": ";
  if (!key.empty()) message += key + ": ";
  message += what;
  if (!hdf5.empty()) message += " (HDF5: " + hdf5 + ")";
  throw DataError(message);
}

// -------------------------------------------------------------- handles ---

std::string join_path(const std::string& base, const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  if (path.empty() || path == ".") return base;
  if (base.empty() || base == "/") return "/" + path;
  return base + "/" + path;
}

bool is_complex_pair(const std::string& a, const std::string& b) {
  return (a == "r" && b == "i") || (a == "real" && b == "imag") || (a == "re" && b == "im");
}

std::string member_name(hid_t type, unsigned index) {
  char* raw = H5Tget_member_name(type, index);
  if (!raw) return "?";
  std::string name(raw);
  H5free_memory(raw);
  return name;
}

Handle bool_type() {
  Handle t(H5Tenum_create(H5T_NATIVE_INT8));
  int8_t value = 0;
  H5Tenum_insert(t.get(), "FALSE", &value);
  value = 1;
  H5Tenum_insert(t.get(), "TRUE", &value);
  return t;
}

Handle complex_type(hid_t part, const std::string& real_name = "r", const std::string& imag_name = "i") {
  size_t size = H5Tget_size(part);
  Handle t(H5Tcreate(H5T_COMPOUND, 2 * size));
  H5Tinsert(t.get(), real_name.c_str(), 0, part);
  H5Tinsert(t.get(), imag_name.c_str(), size, part);
  return t;
}

Handle file_type_handle(FileType type) {
  switch (type) {
    case FileType::int8: return Handle(H5Tcopy(H5T_STD_I8LE));
    case FileType::int16: return Handle(H5Tcopy(H5T_STD_I16LE));
    case FileType::int32: return Handle(H5Tcopy(H5T_STD_I32LE));
    case FileType::int64: return Handle(H5Tcopy(H5T_STD_I64LE));
    case FileType::uint8: return Handle(H5Tcopy(H5T_STD_U8LE));
    case FileType::uint16: return Handle(H5Tcopy(H5T_STD_U16LE));
    case FileType::uint32: return Handle(H5Tcopy(H5T_STD_U32LE));
    case FileType::uint64: return Handle(H5Tcopy(H5T_STD_U64LE));
    case FileType::float32: return Handle(H5Tcopy(H5T_IEEE_F32LE));
    case FileType::float64: return Handle(H5Tcopy(H5T_IEEE_F64LE));
    case FileType::boolean: return bool_type();
    case FileType::complex64: return complex_type(H5T_IEEE_F32LE);
    case FileType::complex128: return complex_type(H5T_IEEE_F64LE);
  }
  return Handle();
}

std::optional<FileType> file_type_for(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat: case torch::kHalf: case torch::kBFloat16: return FileType::float32;
    case torch::kDouble: return FileType::float64;
    case torch::kChar: return FileType::int8;
    case torch::kShort: return FileType::int16;
    case torch::kInt: return FileType::int32;
    case torch::kLong: return FileType::int64;
    case torch::kByte: return FileType::uint8;
    case torch::kBool: return FileType::boolean;
    case torch::kComplexFloat: case torch::kComplexHalf: return FileType::complex64;
    case torch::kComplexDouble: return FileType::complex128;
    default: return std::nullopt;
  }
}

// Memory type for a tensor of dtype; complex member names follow the file's.
Handle memory_type(torch::ScalarType dtype, const std::string& real_name = "r",
                   const std::string& imag_name = "i") {
  switch (dtype) {
    case torch::kFloat: return Handle(H5Tcopy(H5T_NATIVE_FLOAT));
    case torch::kDouble: return Handle(H5Tcopy(H5T_NATIVE_DOUBLE));
    case torch::kChar: return Handle(H5Tcopy(H5T_NATIVE_INT8));
    case torch::kShort: return Handle(H5Tcopy(H5T_NATIVE_INT16));
    case torch::kInt: return Handle(H5Tcopy(H5T_NATIVE_INT32));
    case torch::kLong: return Handle(H5Tcopy(H5T_NATIVE_INT64));
    case torch::kByte: return Handle(H5Tcopy(H5T_NATIVE_UINT8));
    case torch::kBool: return bool_type();
    case torch::kComplexFloat: return complex_type(H5T_NATIVE_FLOAT, real_name, imag_name);
    case torch::kComplexDouble: return complex_type(H5T_NATIVE_DOUBLE, real_name, imag_name);
    default: return Handle();
  }
}

bool is_hdf5_memory_dtype(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat: case torch::kDouble: case torch::kChar: case torch::kShort: case torch::kInt:
    case torch::kLong: case torch::kByte: case torch::kBool: case torch::kComplexFloat:
    case torch::kComplexDouble:
      return true;
    default:
      return false;
  }
}

TypeInfo classify(hid_t type) {
  TypeInfo info;
  info.size = H5Tget_size(type);
  const int bits = static_cast<int>(info.size * 8);
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: {
      const bool is_unsigned = H5Tget_sign(type) == H5T_SGN_NONE;
      info.kind = is_unsigned ? Kind::unsigned_integer : Kind::integer;
      info.name = (is_unsigned ? "uint" : "int") + std::to_string(bits);
      if (is_unsigned) {
        if (info.size == 1) info.torch_dtype = torch::kByte;
        else if (info.size == 2) info.torch_dtype = torch::kInt;
        else info.torch_dtype = torch::kLong;
      } else {
        if (info.size == 1) info.torch_dtype = torch::kChar;
        else if (info.size == 2) info.torch_dtype = torch::kShort;
        else if (info.size == 4) info.torch_dtype = torch::kInt;
        else info.torch_dtype = torch::kLong;
      }
      break;
    }
    case H5T_FLOAT:
      info.kind = Kind::floating;
      info.name = "float" + std::to_string(bits);
      info.torch_dtype = info.size <= 4 ? torch::kFloat : torch::kDouble;
      break;
    case H5T_ENUM: {
      int n = H5Tget_nmembers(type);
      info.name = "enum";
      if (info.size == 1 && n == 2) {
        std::string a = member_name(type, 0), b = member_name(type, 1);
        if ((a == "FALSE" && b == "TRUE") || (a == "TRUE" && b == "FALSE")) {
          info.kind = Kind::boolean;
          info.name = "bool";
          info.torch_dtype = torch::kBool;
        }
      }
      break;
    }
    case H5T_COMPOUND: {
      int n = H5Tget_nmembers(type);
      std::vector<std::string> names;
      for (int i = 0; i < n; ++i) names.push_back(member_name(type, static_cast<unsigned>(i)));
      if (n == 2 && is_complex_pair(names[0], names[1])) {
        Handle a(H5Tget_member_type(type, 0)), b(H5Tget_member_type(type, 1));
        if (H5Tget_class(a.get()) == H5T_FLOAT && H5Tget_class(b.get()) == H5T_FLOAT &&
            H5Tget_size(a.get()) == H5Tget_size(b.get())) {
          info.kind = Kind::complex;
          const size_t part = H5Tget_size(a.get());
          info.name = "complex" + std::to_string(part * 16);
          info.torch_dtype = part <= 4 ? torch::kComplexFloat : torch::kComplexDouble;
          break;
        }
      }
      info.name = "compound {";
      for (int i = 0; i < n; ++i) info.name += (i ? ", " : "") + names[static_cast<size_t>(i)];
      info.name += "}";
      break;
    }
    case H5T_STRING:
      info.kind = Kind::string;
      info.name = "string";
      break;
    case H5T_BITFIELD: info.name = "bitfield"; break;
    case H5T_OPAQUE: info.name = "opaque"; break;
    case H5T_REFERENCE: info.name = "reference"; break;
    case H5T_VLEN: info.name = "variable-length array"; break;
    case H5T_ARRAY: info.name = "array"; break;
    default: info.name = "unknown type"; break;
  }
  return info;
}

// Names of the members of a complex compound (for the memory type).
std::pair<std::string, std::string> complex_names(hid_t type) {
  if (H5Tget_class(type) == H5T_COMPOUND && H5Tget_nmembers(type) == 2)
    return {member_name(type, 0), member_name(type, 1)};
  return {"r", "i"};
}

std::vector<hsize_t> to_hsize(const std::vector<int64_t>& v) {
  return std::vector<hsize_t>(v.begin(), v.end());
}

Handle dataspace_for(const std::vector<int64_t>& shape) {
  if (shape.empty()) return Handle(H5Screate(H5S_SCALAR));
  auto dims = to_hsize(shape);
  return Handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr));
}

Handle link_create_plist() {
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE));
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  H5Pset_char_encoding(lcpl.get(), H5T_CSET_UTF8);
  return lcpl;
}

Handle vlen_string_type() {
  Handle t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

// Reads one string from a dataset (is_attribute = false) or attribute.
template <typename Fail>
std::string read_one_string(hid_t obj, bool is_attribute, const Fail& fail) {
  Handle type(is_attribute ? H5Aget_type(obj) : H5Dget_type(obj));
  Handle space(is_attribute ? H5Aget_space(obj) : H5Dget_space(obj));
  if (!type.valid() || !space.valid()) fail("cannot read its type");
  if (H5Tget_class(type.get()) != H5T_STRING) fail("is not a string");
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n != 1) fail("holds " + std::to_string(n) + " strings; expected one");
  if (H5Tis_variable_str(type.get()) > 0) {
    Handle mem(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    char* value = nullptr;
    herr_t st = is_attribute ? H5Aread(obj, mem.get(), &value)
                             : H5Dread(obj, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &value);
    if (st < 0) fail("cannot be read");
    std::string s = value ? std::string(value) : std::string();
    if (value) H5free_memory(value);
    return s;
  }
  size_t size = H5Tget_size(type.get());
  Handle mem(H5Tcopy(H5T_C_S1));
  H5Tset_size(mem.get(), size + 1);
  H5Tset_strpad(mem.get(), H5T_STR_NULLTERM);
  std::vector<char> buffer(size + 2, '\0');
  herr_t st = is_attribute ? H5Aread(obj, mem.get(), buffer.data())
                           : H5Dread(obj, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buffer.data());
  if (st < 0) fail("cannot be read");
  std::string s(buffer.data());
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

// Does HDF5 convert elements of kind src into dtype directly?
bool hdf5_converts(Kind src, torch::ScalarType dst) {
  if (!is_hdf5_memory_dtype(dst)) return false;
  if (dst == torch::kBool || src == Kind::boolean) return dst == torch::kBool && src == Kind::boolean;
  if (c10::isComplexType(dst) || src == Kind::complex) return c10::isComplexType(dst) && src == Kind::complex;
  return src == Kind::integer || src == Kind::unsigned_integer || src == Kind::floating;
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

void Handle::reset() {
  if (id_ < 0) return;
  silence_error_printing();
  switch (H5Iget_type(id_)) {
    case H5I_FILE: H5Fclose(id_); break;
    case H5I_GROUP: H5Gclose(id_); break;
    case H5I_DATASET: H5Dclose(id_); break;
    case H5I_ATTR: H5Aclose(id_); break;
    case H5I_DATASPACE: H5Sclose(id_); break;
    case H5I_DATATYPE: H5Tclose(id_); break;
    case H5I_GENPROP_LST: H5Pclose(id_); break;
    default: H5Idec_ref(id_); break;
  }
  H5Eclear2(H5E_DEFAULT);
  id_ = H5I_INVALID_HID;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  if (shape.empty()) return "scalar";
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? " × " : "") + std::to_string(shape[i]);
  return s;
}

// ---------------------------------------------------------------- Object ---

std::string Object::full_key(const std::string& path) const { return join_path(key_, path); }

void Object::fail(const std::string& what) const { throw_error(file_, key_, what); }

void Object::fail(const std::string& path, const std::string& what) const {
  throw_error(file_, full_key(path), what);
}

bool Object::has_attribute(const std::string& name) const {
  silence_error_printing();
  htri_t r = H5Aexists(id(), name.c_str());
  if (r < 0) fail("cannot list its attributes");
  return r > 0;
}

std::string Object::read_string_attribute(const std::string& name) const {
  silence_error_printing();
  auto fail_attr = [&](const std::string& what) { throw_error(file_, key_, "attribute '" + name + "' " + what); };
  if (!has_attribute(name)) fail_attr("is missing");
  Handle attr(H5Aopen(id(), name.c_str(), H5P_DEFAULT));
  if (!attr.valid()) fail_attr("cannot be opened");
  return read_one_string(attr.get(), true, fail_attr);
}

double Object::read_double_attribute(const std::string& name) const {
  silence_error_printing();
  auto fail_attr = [&](const std::string& what) { throw_error(file_, key_, "attribute '" + name + "' " + what); };
  if (!has_attribute(name)) fail_attr("is missing");
  Handle attr(H5Aopen(id(), name.c_str(), H5P_DEFAULT));
  if (!attr.valid()) fail_attr("cannot be opened");
  Handle type(H5Aget_type(attr.get()));
  Handle space(H5Aget_space(attr.get()));
  TypeInfo info = classify(type.get());
  if (info.kind != Kind::integer && info.kind != Kind::unsigned_integer && info.kind != Kind::floating)
    fail_attr("holds " + info.name + ", not a number");
  if (H5Sget_simple_extent_npoints(space.get()) != 1) fail_attr("holds several values; expected one");
  double value = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &value) < 0) fail_attr("cannot be read");
  return value;
}

namespace {

template <typename Fail>
void write_attribute_raw(hid_t obj, const std::string& name, hid_t file_type, hid_t mem_type,
                         const void* data, const Fail& fail) {
  silence_error_printing();
  htri_t exists = H5Aexists(obj, name.c_str());
  if (exists > 0 && H5Adelete(obj, name.c_str()) < 0) fail("cannot be replaced");
  Handle space(H5Screate(H5S_SCALAR));
  Handle attr(H5Acreate2(obj, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!attr.valid()) fail("cannot be created");
  if (H5Awrite(attr.get(), mem_type, data) < 0) fail("cannot be written");
}

}  // namespace

void Object::write_attribute(const std::string& name, const std::string& value) const {
  auto fail_attr = [&](const std::string& what) { throw_error(file_, key_, "attribute '" + name + "' " + what); };
  Handle type = vlen_string_type();
  const char* p = value.c_str();
  write_attribute_raw(id(), name, type.get(), type.get(), &p, fail_attr);
}

void Object::write_attribute(const std::string& name, double value) const {
  auto fail_attr = [&](const std::string& what) { throw_error(file_, key_, "attribute '" + name + "' " + what); };
  write_attribute_raw(id(), name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, fail_attr);
}

void Object::write_attribute(const std::string& name, int64_t value) const {
  auto fail_attr = [&](const std::string& what) { throw_error(file_, key_, "attribute '" + name + "' " + what); };
  write_attribute_raw(id(), name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, fail_attr);
}

// -------------------------------------------------------------- Location ---

namespace {

// Prefixes of path: "a/b/c" -> {"a", "a/b", "a/b/c"}, "/a/b" -> {"/a", "/a/b"}.
std::vector<std::string> prefixes(const std::string& path) {
  std::vector<std::string> out;
  std::string current = path.size() && path[0] == '/' ? "/" : "";
  std::stringstream parts(path);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty() || part == ".") continue;
    if (!current.empty() && current.back() != '/') current += "/";
    current += part;
    out.push_back(current);
  }
  return out;
}

}  // namespace

bool Location::exists(const std::string& path) const {
  silence_error_printing();
  for (const auto& p : prefixes(path)) {
    if (H5Lexists(id(), p.c_str(), H5P_DEFAULT) <= 0 || H5Oexists_by_name(id(), p.c_str(), H5P_DEFAULT) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
  }
  return true;
}

bool Location::is_dangling_link(const std::string& path) const {
  silence_error_printing();
  auto all = prefixes(path);
  if (all.empty()) return false;
  if (all.size() > 1 && !exists(all[all.size() - 2])) return false;
  const char* p = all.back().c_str();
  bool dangling = H5Lexists(id(), p, H5P_DEFAULT) > 0 && H5Oexists_by_name(id(), p, H5P_DEFAULT) <= 0;
  H5Eclear2(H5E_DEFAULT);
  return dangling;
}

namespace {

H5I_type_t object_type(hid_t loc, const std::string& path) {
  Handle obj(H5Oopen(loc, path.c_str(), H5P_DEFAULT));
  if (!obj.valid()) {
    H5Eclear2(H5E_DEFAULT);
    return H5I_BADID;
  }
  return H5Iget_type(obj.get());
}

}  // namespace

bool Location::is_group(const std::string& path) const {
  return exists(path) && object_type(id(), path) == H5I_GROUP;
}

bool Location::is_dataset(const std::string& path) const {
  return exists(path) && object_type(id(), path) == H5I_DATASET;
}

std::vector<std::string> Location::children() const {
  silence_error_printing();
  H5G_info_t info;
  if (H5Gget_info(id(), &info) < 0) fail("cannot list its members");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t n = H5Lget_name_by_idx(id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) fail("cannot list its members");
    std::string name(static_cast<size_t>(n) + 1, '\0');
    H5Lget_name_by_idx(id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(static_cast<size_t>(n));
    names.push_back(name);
  }
  return names;
}

Group Location::group(const std::string& path) const {
  silence_error_printing();
  if (!exists(path)) fail(path, "is missing");
  if (object_type(id(), path) != H5I_GROUP) fail(path, "is not a group");
  Handle g(H5Gopen2(id(), path.c_str(), H5P_DEFAULT));
  if (!g.valid()) fail(path, "cannot be opened");
  return Group(std::move(g), file_, full_key(path));
}

Group Location::require_group(const std::string& path) const {
  silence_error_printing();
  if (exists(path)) return group(path);
  Handle lcpl = link_create_plist();
  Handle g(H5Gcreate2(id(), path.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!g.valid()) fail(path, "cannot be created");
  return Group(std::move(g), file_, full_key(path));
}

Dataset Location::dataset(const std::string& path) const {
  silence_error_printing();
  if (!exists(path)) {
    if (is_dangling_link(path)) {
      std::string target;
      H5L_info_t info;
      if (H5Lget_info(id(), path.c_str(), &info, H5P_DEFAULT) >= 0 && info.type == H5L_TYPE_SOFT) {
        std::string buffer(info.u.val_size + 1, '\0');
        if (H5Lget_val(id(), path.c_str(), buffer.data(), buffer.size(), H5P_DEFAULT) >= 0)
          target = buffer.c_str();
      }
      H5Eclear2(H5E_DEFAULT);
      fail(path, target.empty() ? "is a link to something that does not exist"
                                : "is a link to " + target + ", which does not exist");
    }
    fail(path, "is missing");
  }
  if (object_type(id(), path) != H5I_DATASET) fail(path, "is a group, not a dataset");
  Handle d(H5Dopen2(id(), path.c_str(), H5P_DEFAULT));
  if (!d.valid()) fail(path, "cannot be opened");
  return Dataset(std::move(d), file_, full_key(path));
}

Dataset Location::create_dataset(const std::string& path, const torch::Tensor& data,
                                 const DatasetOptions& options) const {
  silence_error_printing();
  auto fail_here = [&](const std::string& what) { fail(path, what); };
  torch::Tensor t = data.detach().to(torch::kCPU);
  std::optional<FileType> ftype = options.file_type ? options.file_type : file_type_for(t.scalar_type());
  if (!ftype) fail_here(std::string("cannot store tensors of dtype ") + c10::toString(t.scalar_type()));
  // Bring the tensor to a dtype whose memory type HDF5 can convert to the file type.
  const bool file_complex = *ftype == FileType::complex64 || *ftype == FileType::complex128;
  if (t.is_complex() && !file_complex) fail_here("cannot store complex values as a real type");
  if (*ftype == FileType::boolean) {
    if (t.scalar_type() != torch::kBool) t = t != 0;
  } else if (t.scalar_type() == torch::kBool) {
    t = t.to(torch::kByte);
  }
  if (file_complex && !t.is_complex())
    t = t.to(*ftype == FileType::complex64 ? torch::kComplexFloat : torch::kComplexDouble);
  if (t.scalar_type() == torch::kHalf || t.scalar_type() == torch::kBFloat16) t = t.to(torch::kFloat);
  if (t.scalar_type() == torch::kComplexHalf) t = t.to(torch::kComplexFloat);
  t = t.contiguous();

  Handle file_type = file_type_handle(*ftype);
  Handle mem_type = memory_type(t.scalar_type());
  if (!mem_type.valid()) fail_here(std::string("cannot store tensors of dtype ") + c10::toString(t.scalar_type()));
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  Handle space = dataspace_for(shape);

  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE));
  if ((!options.chunk.empty() || options.gzip_level > 0) && !shape.empty() && t.numel() > 0) {
    std::vector<int64_t> chunk = options.chunk;
    if (chunk.empty()) {
      chunk = shape;
      chunk[0] = 1;
    }
    if (chunk.size() != shape.size()) fail_here("chunk rank does not match the data rank");
    std::vector<hsize_t> dims;
    for (size_t i = 0; i < chunk.size(); ++i) dims.push_back(static_cast<hsize_t>(std::clamp<int64_t>(chunk[i], 1, shape[i])));
    if (H5Pset_chunk(dcpl.get(), static_cast<int>(dims.size()), dims.data()) < 0) fail_here("invalid chunk shape");
    if (options.gzip_level > 0) {
      if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0) fail_here("gzip compression is not available in this HDF5 library");
      if (H5Pset_deflate(dcpl.get(), static_cast<unsigned>(std::min(options.gzip_level, 9))) < 0)
        fail_here("cannot set gzip compression");
    }
  }
  Handle lcpl = link_create_plist();
  Handle d(H5Dcreate2(id(), path.c_str(), file_type.get(), space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT));
  if (!d.valid()) fail_here("cannot be created");
  if (t.numel() > 0 && H5Dwrite(d.get(), mem_type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) < 0)
    fail_here("cannot be written");
  return Dataset(std::move(d), file_, full_key(path));
}

Dataset Location::write_scalar(const std::string& path, double value) const {
  silence_error_printing();
  Handle space(H5Screate(H5S_SCALAR));
  Handle lcpl = link_create_plist();
  Handle d(H5Dcreate2(id(), path.c_str(), H5T_IEEE_F64LE, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!d.valid()) fail(path, "cannot be created");
  if (H5Dwrite(d.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value) < 0) fail(path, "cannot be written");
  return Dataset(std::move(d), file_, full_key(path));
}

Dataset Location::write_scalar(const std::string& path, int64_t value) const {
  silence_error_printing();
  Handle space(H5Screate(H5S_SCALAR));
  Handle lcpl = link_create_plist();
  Handle d(H5Dcreate2(id(), path.c_str(), H5T_STD_I64LE, space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!d.valid()) fail(path, "cannot be created");
  if (H5Dwrite(d.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value) < 0) fail(path, "cannot be written");
  return Dataset(std::move(d), file_, full_key(path));
}

Dataset Location::write_scalar(const std::string& path, int value) const {
  return write_scalar(path, static_cast<int64_t>(value));
}

Dataset Location::write_string(const std::string& path, const std::string& value) const {
  silence_error_printing();
  Handle type = vlen_string_type();
  Handle space(H5Screate(H5S_SCALAR));
  Handle lcpl = link_create_plist();
  Handle d(H5Dcreate2(id(), path.c_str(), type.get(), space.get(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT));
  if (!d.valid()) fail(path, "cannot be created");
  const char* p = value.c_str();
  if (H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &p) < 0) fail(path, "cannot be written");
  return Dataset(std::move(d), file_, full_key(path));
}

void Location::create_soft_link(const std::string& path, const std::string& target) const {
  silence_error_printing();
  Handle lcpl = link_create_plist();
  if (H5Lcreate_soft(target.c_str(), id(), path.c_str(), lcpl.get(), H5P_DEFAULT) < 0)
    fail(path, "cannot create a link to " + target);
}

void Location::remove(const std::string& path) const {
  silence_error_printing();
  if (H5Ldelete(id(), path.c_str(), H5P_DEFAULT) < 0) fail(path, "cannot be removed");
}

// ------------------------------------------------------------------ File ---

File File::open(const std::string& path, Mode mode) {
  silence_error_printing();
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool found = fs::exists(path, ec);
  if (ec) throw DataError(path + ": cannot be accessed: " + ec.message());
  if (!found) throw DataError(path + ": file not found");
  if (fs::is_directory(path, ec)) throw DataError(path + ": is a directory, not an HDF5 (CXI) file");
  // Opening a FIFO or a device blocks (or reads forever): only files are data.
  if (!fs::is_regular_file(path, ec))
    throw DataError(path + ": is not a regular file (a pipe, socket or device); an HDF5 (CXI) file is needed");
  htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 == 0) {
    H5Eclear2(H5E_DEFAULT);
    auto size = fs::file_size(path, ec);
    throw DataError(path + ": is not an HDF5 file (no HDF5 signature in its " +
                    (ec ? std::string("") : std::to_string(size) + " ") +
                    "bytes); a CXI file is an HDF5 file, as written by h5py or tessera");
  }
  if (is_hdf5 < 0) throw_error(path, "", "cannot be read");
  hid_t id = H5Fopen(path.c_str(), mode == Mode::read_only ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT);
  if (id < 0) {
    std::string hdf5 = take_error_message();
    std::string lower = hdf5;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    std::string what;
    if (lower.find("truncated") != std::string::npos)
      what = "is truncated: the file is shorter than its HDF5 header says (an interrupted copy or write?)";
    else if (lower.find("lock") != std::string::npos)
      what = "is locked by another program, or this file system does not support HDF5 file locking "
             "(then set HDF5_USE_FILE_LOCKING=FALSE)";
    else
      what = "could not be opened as an HDF5 file (damaged?)";
    throw DataError(path + ": " + what + (hdf5.empty() ? "" : " (HDF5: " + hdf5 + ")"));
  }
  return File(Handle(id), path, "/");
}

File File::create(const std::string& path) {
  silence_error_printing();
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) throw_error(path, "", "cannot be created (does the directory exist and is it writable?)");
  return File(Handle(id), path, "/");
}

void File::flush() const {
  silence_error_printing();
  if (valid() && H5Fflush(id(), H5F_SCOPE_GLOBAL) < 0) throw_error(file_, "", "cannot be written to disk (disk full?)");
}

void File::close() {
  if (!valid()) return;
  flush();
  silence_error_printing();
  herr_t status = H5Fclose(handle_.release());
  if (status < 0) throw_error(file_, "", "cannot be closed (disk full?)");
}

// --------------------------------------------------------------- Dataset ---

std::vector<int64_t> Dataset::shape() const {
  silence_error_printing();
  Handle space(H5Dget_space(id()));
  if (!space.valid()) fail("cannot read its shape");
  // A null dataspace holds no value, yet reports rank 0 like a scalar: seen
  // as a scalar, reading it would return uninitialised memory.
  if (H5Sget_simple_extent_type(space.get()) == H5S_NULL) return {0};
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail("cannot read its shape");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

int64_t Dataset::numel() const {
  int64_t n = 1;
  for (auto d : shape()) n *= d;
  return n;
}

TypeInfo Dataset::type() const {
  silence_error_printing();
  Handle t(H5Dget_type(id()));
  if (!t.valid()) fail("cannot read its element type");
  return classify(t.get());
}

std::vector<std::string> Dataset::unavailable_filters() const {
  silence_error_printing();
  std::vector<std::string> out;
  Handle dcpl(H5Dget_create_plist(id()));
  if (!dcpl.valid()) fail("cannot read its storage properties");
  const int n = H5Pget_nfilters(dcpl.get());
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0, config = 0;
    size_t cd_nelmts = 0;
    char name[256] = {0};
    H5Z_filter_t id = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &cd_nelmts, nullptr, sizeof name, name, &config);
    if (id < 0) continue;
    if (flags & H5Z_FLAG_OPTIONAL) continue;  // data stay readable without it
    if (H5Zfilter_avail(id) <= 0)
      out.push_back((name[0] ? std::string(name) : std::string("unknown")) + " (filter " + std::to_string(id) + ")");
  }
  H5Eclear2(H5E_DEFAULT);
  return out;
}

torch::Tensor Dataset::read() const {
  TypeInfo info = type();
  if (!info.torch_dtype) fail("holds " + info.name + " values, not numbers");
  return read(*info.torch_dtype);
}

torch::Tensor Dataset::read(torch::ScalarType dtype) const {
  auto s = shape();
  if (s.empty()) {
    // Scalar: read as a one-element array and drop the dimension.
    TypeInfo info = type();
    if (!info.torch_dtype) fail("holds " + info.name + " values, not numbers");
    if (info.kind == Kind::complex && !c10::isComplexType(dtype)) fail("holds complex values; expected real numbers");
    torch::ScalarType native = hdf5_converts(info.kind, dtype) ? dtype : *info.torch_dtype;
    Handle t(H5Dget_type(id()));
    auto names = complex_names(t.get());
    Handle mem = memory_type(native, names.first, names.second);
    torch::Tensor out = torch::empty({}, torch::TensorOptions().dtype(native));
    if (H5Dread(id(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data_ptr()) < 0) fail("cannot be read");
    return native == dtype ? out : (dtype == torch::kBool ? out != 0 : out.to(dtype));
  }
  return read_rows(0, s[0], dtype);
}

torch::Tensor Dataset::read_rows(int64_t begin, int64_t end, torch::ScalarType dtype) const {
  auto s = shape();
  if (s.empty()) fail("is a single value, not an array of rows");
  std::vector<int64_t> out_shape = s;
  out_shape[0] = end - begin;
  if (begin < 0 || end < begin || end > s[0])
    fail("rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") requested but it has " +
         std::to_string(s[0]));
  torch::Tensor out = torch::empty(out_shape, torch::TensorOptions().dtype(dtype));
  read_rows_into(begin, end, out);
  return out;
}

void Dataset::read_rows_into(int64_t begin, int64_t end, torch::Tensor& out) const {
  silence_error_printing();
  auto s = shape();
  if (s.empty()) fail("is a single value, not an array of rows");
  if (begin < 0 || end < begin || end > s[0])
    fail("rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") requested but it has " +
         std::to_string(s[0]));
  std::vector<int64_t> want = s;
  want[0] = end - begin;
  if (!out.device().is_cpu() || !out.is_contiguous() || out.sizes().vec() != want)
    fail("internal error: output tensor for rows [" + std::to_string(begin) + ", " + std::to_string(end) +
         ") must be a contiguous CPU tensor of shape " + shape_string(want));
  if (end == begin || out.numel() == 0) return;

  TypeInfo info = type();
  if (!info.torch_dtype) fail("holds " + info.name + " values, not numbers");
  const torch::ScalarType dtype = out.scalar_type();
  if (info.kind == Kind::complex && !c10::isComplexType(dtype)) fail("holds complex values; expected real numbers");
  const bool direct = hdf5_converts(info.kind, dtype);
  torch::Tensor target = direct ? out : torch::empty(want, torch::TensorOptions().dtype(*info.torch_dtype));

  Handle ftype(H5Dget_type(id()));
  auto names = complex_names(ftype.get());
  Handle mem = memory_type(target.scalar_type(), names.first, names.second);
  Handle fspace(H5Dget_space(id()));
  std::vector<hsize_t> start(s.size(), 0), count = to_hsize(want);
  start[0] = static_cast<hsize_t>(begin);
  if (H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0)
    fail("cannot select rows [" + std::to_string(begin) + ", " + std::to_string(end) + ")");
  Handle mspace(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr));
  if (H5Dread(id(), mem.get(), mspace.get(), fspace.get(), H5P_DEFAULT, target.data_ptr()) < 0)
    fail("rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") cannot be read (damaged file?)");
  if (!direct) out.copy_(dtype == torch::kBool ? target != 0 : target.to(dtype));
}

double Dataset::read_scalar() const {
  TypeInfo info = type();
  if (info.kind == Kind::string) fail("holds text, not a number");
  if (info.kind == Kind::complex) fail("holds a complex value; expected a real number");
  if (!info.torch_dtype) fail("holds " + info.name + ", not a number");
  int64_t n = numel();
  if (n != 1) fail("holds " + std::to_string(n) + " values (shape " + shape_string(shape()) + "); expected a single value");
  return read(torch::kDouble).reshape({-1})[0].item<double>();
}

std::string Dataset::read_string() const {
  silence_error_printing();
  auto fail_here = [&](const std::string& what) { fail(what); };
  return read_one_string(id(), false, fail_here);
}

void Dataset::write_rows(int64_t begin, const torch::Tensor& data) const {
  silence_error_printing();
  auto s = shape();
  if (s.empty()) fail("is a single value, not an array of rows");
  torch::Tensor t = data.detach().to(torch::kCPU);
  if (t.dim() != static_cast<int64_t>(s.size())) fail("write_rows: data rank does not match");
  for (size_t i = 1; i < s.size(); ++i)
    if (t.size(static_cast<int64_t>(i)) != s[i]) fail("write_rows: data shape does not match");
  const int64_t end = begin + t.size(0);
  if (begin < 0 || end > s[0]) fail("write_rows: rows out of range");
  TypeInfo info = type();
  if (info.kind == Kind::boolean) t = t != 0;
  else if (t.scalar_type() == torch::kBool) t = t.to(torch::kByte);
  if (info.kind == Kind::complex && !t.is_complex()) t = t.to(torch::kComplexFloat);
  if (info.kind != Kind::complex && t.is_complex()) fail("write_rows: cannot store complex values as a real type");
  if (!is_hdf5_memory_dtype(t.scalar_type())) t = t.to(t.is_complex() ? torch::kComplexFloat : torch::kFloat);
  t = t.contiguous();
  if (t.numel() == 0) return;
  Handle ftype(H5Dget_type(id()));
  auto names = complex_names(ftype.get());
  Handle mem = memory_type(t.scalar_type(), names.first, names.second);
  Handle fspace(H5Dget_space(id()));
  std::vector<hsize_t> start(s.size(), 0), count(s.begin(), s.end());
  start[0] = static_cast<hsize_t>(begin);
  count[0] = static_cast<hsize_t>(t.size(0));
  if (H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0)
    fail("cannot select rows for writing");
  Handle mspace(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr));
  if (H5Dwrite(id(), mem.get(), mspace.get(), fspace.get(), H5P_DEFAULT, t.data_ptr()) < 0) fail("cannot be written");
}

}  // namespace tessera::h5
