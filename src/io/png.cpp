#include "src/io/png.h"

#include <png.h>

#include <cstdio>
#include <vector>

#include "src/error.h"
#include "src/io/atomic_file.h"

namespace tessera {

void write_png(const std::string& path, const torch::Tensor& image, double lo, double hi) {
  TESSERA_REQUIRE(Error, image.dim() == 2 && !image.is_complex(), "PNG preview needs a real 2-D image, got ",
                  image.sizes());
  auto img = image.detach().to(torch::kFloat64).cpu().contiguous();
  if (lo == hi) {
    auto sorted = std::get<0>(img.flatten().sort());
    const int64_t n = sorted.numel();
    lo = sorted[n * 5 / 1000].item<double>();
    hi = sorted[std::min(n - 1, n * 995 / 1000)].item<double>();
    if (hi <= lo) hi = lo + 1;
  }
  auto bytes = ((img - lo) / (hi - lo) * 255.0).clamp(0, 255).round().to(torch::kUInt8).contiguous();
  const int64_t h = img.size(0), w = img.size(1);
  write_atomically(path, [&](const std::string& tmp) {
    FILE* fp = std::fopen(tmp.c_str(), "wb");
    TESSERA_REQUIRE(Error, fp, "cannot write ", tmp);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
      png_destroy_write_struct(&png, &info);
      std::fclose(fp);
      throw Error("libpng failed writing " + path);
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, static_cast<png_uint_32>(w), static_cast<png_uint_32>(h), 8, PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    auto* data = bytes.data_ptr<uint8_t>();
    for (int64_t y = 0; y < h; ++y) png_write_row(png, data + y * w);
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    TESSERA_REQUIRE(Error, std::fclose(fp) == 0, "cannot finish writing ", tmp);
  });
}

}  // namespace tessera
