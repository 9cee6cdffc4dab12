#!/usr/bin/env bash
# Prepares what the GPU machine cannot fetch (it reaches no package registry):
# Debian 12's HDF5, libpng, zlib headers, cxxopts, GoogleTest and the Gloo
# headers the pip LibTorch lacks, unpacked (dpkg -x, not installed) into
# .gpu-deps/root/ for scripts/gpu/check_all.sh to build against, plus the
# Siemens star data (../shared does not travel to that machine).
#
#   bash scripts/gpu/prepare_deps.sh      # then carry .gpu-deps in the device call
#
# HDF5's shared library needs libcurl and its own dependencies at run time
# (Debian builds it with the S3 driver); they come along, and
# scripts/gpu/deps_env.sh puts on the library path only those the machine
# does not have. Debian's static libhdf5.a would avoid that but is not
# position-independent, so it cannot go into tessera's shared core library.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=.gpu-deps
packages=(
  libhdf5-dev libhdf5-103-1 libsz2 libaec0          # CXI files (headers, library)
  libcurl4 libssl3 libnghttp2-14 libidn2-0 librtmp1 libssh2-1 libpsl5 libgssapi-krb5-2 libkrb5-3
  libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1 libldap-2.5-0 libsasl2-2 libzstd1 libbrotli1
  libunistring2 libgnutls30 libhogweed6 libnettle8 libgmp10 libp11-kit0 libtasn1-6 libffi8
  libpng-dev libpng16-16 zlib1g-dev zlib1g           # PNG previews (FindPNG needs zlib's headers)
  libcxxopts-dev                                     # command line (header only)
  libtomlplusplus-dev                                # run files (header only)
  libgtest-dev                                       # test suite (static libraries)
  libgloo-dev                                        # ProcessGroupGloo's headers
)
rm -rf "$dest/debs" "$dest/root"
mkdir -p "$dest/debs" "$dest/root"
(cd "$dest/debs" && apt-get download -q "${packages[@]}" >/dev/null)
for deb in "$dest"/debs/*.deb; do dpkg -x "$deb" "$dest/root"; done
root=$(cd "$dest/root" && pwd)
# Absolute links (libz.so -> /lib/...so.1.2.13) would point into the
# machine's own system: point them inside root instead.
find "$root" -type l | while read -r link; do
  target=$(readlink "$link")
  case "$target" in
    /*) ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$root$target")" "$link" ;;
  esac
done
# What neither the build nor the run reads: documentation, Fortran and C++
# HDF5 bindings, static archives other than GoogleTest's.
rm -rf "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/lintian" "$root/usr/src"
find "$root" \( -name '*fortran*' -o -name '*hdf5_cpp*' -o -name '*hdf5_hl_cpp*' \) -prune -exec rm -rf {} +
find "$root" -name '*.a' ! -name 'libgtest*.a' -delete
# A dangling link (its package left out above) breaks CMake's searches.
find "$root" -xtype l -delete
rm -rf "$dest/debs"
# The shared Siemens star (its README says what is real).
mkdir -p "$dest/data/siemens-star"
cp ../shared/data/siemens-star/* "$dest/data/siemens-star/"
echo "prepare_deps: $(du -sh "$dest" | cut -f1) in $dest ($(ls "$root"/usr/lib/x86_64-linux-gnu/*.so* 2>/dev/null | wc -l) libraries)"
