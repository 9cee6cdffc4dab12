# Sourced (not run): points CMake and the dynamic loader at the libraries
# scripts/gpu/prepare_deps.sh unpacked into .gpu-deps/root.
#
# Sets TESSERA_DEPS_CMAKE_ARGS (an array) and TESSERA_DEPS_PREFIX for cmake, and LD_LIBRARY_PATH to a
# folder of links to those of the carried libraries whose names the machine's
# loader does not know: a carried library never shadows the machine's own
# (an older Debian libssl ahead of the system's could break Python).
tessera_deps=${TESSERA_DEPS:-$PWD/.gpu-deps}
[ -d "$tessera_deps/root" ] || { echo "deps_env: $tessera_deps/root missing: run scripts/gpu/prepare_deps.sh" >&2; return 1; }
tessera_deps=$(cd "$tessera_deps" && pwd)
tessera_deps_root=$tessera_deps/root
tessera_known=$(ldconfig -p | awk 'NR > 1 {print $1}')
mkdir -p "$tessera_deps/missing-libs"
rm -f "$tessera_deps/missing-libs"/*
for tessera_dir in "$tessera_deps_root/usr/lib/x86_64-linux-gnu" "$tessera_deps_root/lib/x86_64-linux-gnu"; do
  [ -d "$tessera_dir" ] || continue
  for tessera_lib in "$tessera_dir"/*.so.*; do
    [ -e "$tessera_lib" ] || continue
    tessera_name=$(basename "$tessera_lib")
    # Only sonames (libfoo.so.N), the names NEEDED entries use.
    [[ "$tessera_name" =~ ^[^.]+(\.[^.]+)*\.so\.[0-9]+$ ]] || continue
    # TESSERA_DEPS_ALL=1: every carried library (to try the set here, where none is missing).
    if [ "${TESSERA_DEPS_ALL:-0}" = 1 ] || ! grep -qxF "$tessera_name" <<< "$tessera_known"; then
      ln -sfn "$tessera_lib" "$tessera_deps/missing-libs/$tessera_name"
    fi
  done
done
export LD_LIBRARY_PATH="$tessera_deps/missing-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
TESSERA_DEPS_CMAKE_ARGS=(
  "-DHDF5_ROOT=$tessera_deps_root/usr/lib/x86_64-linux-gnu/hdf5/serial"
  "-DHDF5_C_COMPILER_EXECUTABLE=HDF5_C_COMPILER_EXECUTABLE-NOTFOUND"
  "-DPNG_PNG_INCLUDE_DIR=$tessera_deps_root/usr/include/libpng16"
  "-DPNG_LIBRARY=$tessera_deps_root/usr/lib/x86_64-linux-gnu/libpng16.so"
  "-DZLIB_INCLUDE_DIR=$tessera_deps_root/usr/include"
  "-DZLIB_LIBRARY=$tessera_deps_root/usr/lib/x86_64-linux-gnu/libz.so"
  "-DGTest_DIR=$tessera_deps_root/usr/lib/x86_64-linux-gnu/cmake/GTest"
  "-Dcxxopts_DIR=$tessera_deps_root/usr/lib/cmake/cxxopts"
  # Gloo's headers (ProcessGroupGloo.h includes them) have no CMake target here.
  "-DCMAKE_CXX_FLAGS=-isystem $tessera_deps_root/usr/include"
)
# For cmake's CMAKE_PREFIX_PATH, after the LibTorch's own.
TESSERA_DEPS_PREFIX=$tessera_deps_root/usr
echo "deps_env: $(ls "$tessera_deps/missing-libs" | wc -l) carried libraries this machine lacks, on LD_LIBRARY_PATH"
