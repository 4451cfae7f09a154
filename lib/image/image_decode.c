/*
 * Loading images: grad_image_load and grad_image_load_memory, PNG (libpng)
 * and JPEG (libjpeg-turbo) decoding to 8-bit gray or RGB.
 *
 * Both libraries report fatal errors through callbacks that must not
 * return; ours record the message and longjmp back into the function that
 * called setjmp. That function only touches state through its job pointer
 * (never its own locals after the setjmp), and everything it allocated is
 * reachable from the job, so the caller frees it on every path. The default
 * handlers, which print to stderr, are replaced: the library never prints.
 */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "fileio.h"
#include "image_internal.h"
#include "png_glue.h"

static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

grad_status grad__image_decode(const unsigned char *data, size_t size, const char *name,
                               grad_image **out) {
  *out = NULL;
  if (size == 0) return grad__fail(GRAD_E_FORMAT, "%s: empty file, not an image", name);
  if (size >= 2 && data[0] == 0xFF && data[1] == 0xD8)
    return grad__jpeg_decode(data, size, name, out);
  if (size >= sizeof png_signature && memcmp(data, png_signature, sizeof png_signature) == 0)
    return grad__png_decode(data, size, name, out);
  if (size < sizeof png_signature && memcmp(data, png_signature, size) == 0)
    return grad__fail(GRAD_E_FORMAT, "%s: truncated PNG (%zu bytes)", name, size);
  if (size >= 4 && memcmp(data + 1, "PNG", 3) == 0)
    return grad__fail(GRAD_E_FORMAT,
                      "%s: corrupt PNG: damaged signature (was it transferred in text mode?)",
                      name);
  if (size == 1 && data[0] == 0xFF)
    return grad__fail(GRAD_E_FORMAT, "%s: truncated JPEG (1 byte)", name);
  unsigned char head[4] = {0, 0, 0, 0};
  memcpy(head, data, size < 4 ? size : 4);
  return grad__fail(GRAD_E_UNSUPPORTED,
                    "%s: not a PNG or JPEG image (starts with bytes %02x %02x %02x %02x)", name,
                    head[0], head[1], head[2], head[3]);
}

/* A compressed file larger than this cannot hold an image within
 * GRAD_IMAGE_MAX_PIXELS in any sane encoding (16-bit RGBA is 8 bytes a pixel). */
#define IMAGE_MAX_FILE_BYTES (GRAD_IMAGE_MAX_PIXELS * 8)

grad_status grad_image_load(const char *path, grad_image **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_image_load: out is NULL");
  *out = NULL;
  if (!path || !*path) return grad__fail(GRAD_E_INVALID_ARG, "grad_image_load: empty path");
  unsigned char *data;
  size_t size;
  grad_status s = grad__read_file(path, IMAGE_MAX_FILE_BYTES, &data, &size);
  if (s != GRAD_OK) return s;
  s = grad__image_decode(data, size, path, out);
  grad__free(data);
  return s;
}

grad_status grad_image_load_memory(const void *data, size_t size, grad_image **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad_image_load_memory: out is NULL");
  *out = NULL;
  if (!data && size)
    return grad__fail(GRAD_E_INVALID_ARG, "grad_image_load_memory: data is NULL");
  return grad__image_decode(data, size, "<memory>", out);
}

/* ---- PNG ------------------------------------------------------------- */

typedef struct png_job {
  const char *name;
  const unsigned char *data;
  size_t size;
  size_t pos;
  png_structp png;
  png_infop info;
  grad__png_status status; /* libpng's error message; set by the allocator too */
  unsigned char *buffer; /* rows with alpha, when it must be dropped */
  png_bytep *rows;
  grad_image *image;
} png_job;

static void png_read_memory(png_structp png, png_bytep dst, size_t bytes) {
  png_job *job = png_get_io_ptr(png);
  if (bytes > job->size - job->pos) png_error(png, "file ends early (truncated)");
  memcpy(dst, job->data + job->pos, bytes);
  job->pos += bytes;
}

static grad_status png_run(png_job *job) {
  if (setjmp(png_jmpbuf(job->png))) {
    if (job->status.out_of_memory)
      return grad__fail(GRAD_E_NOMEM, "%s: out of memory decoding PNG", job->name);
    return grad__fail(GRAD_E_FORMAT, "%s: corrupt PNG: %s", job->name, job->status.message);
  }
  png_structp png = job->png;
  png_infop info = job->info;
  png_set_read_fn(png, job, png_read_memory);
  /* Our own limits below replace libpng's (1e6 per side) with clearer errors. */
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  /* libpng allocates and zeroes the declared length of these chunks before
   * reading them (an 89-byte file can claim 2 GB); none changes the pixels,
   * so they are skipped unread (tests/fixtures/regress/png_text_2gb.png). */
  static const png_byte unused_chunks[] = "eXIf\0iCCP\0iTXt\0pCAL\0sCAL\0sPLT\0tEXt\0zTXt";
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, unused_chunks,
                              (int)(sizeof unused_chunks / 5));
  png_read_info(png, info);
  png_uint_32 width, height;
  int depth, color;
  png_get_IHDR(png, info, &width, &height, &depth, &color, NULL, NULL, NULL);
  grad_status s = grad__image_check_size(job->name, width, height);
  if (s != GRAD_OK) return s;

  /* Palettes become RGB (RGBA with tRNS; the alpha is dropped below), low
   * bit depths are scaled to 8 bits, 16-bit samples keep their high byte as
   * PIL's "RGB;16B" unpacking does. No gamma or colour management. */
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16) png_set_strip_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int channels = png_get_channels(png, info);
  size_t row_bytes = png_get_rowbytes(png, info);
  if (png_get_bit_depth(png, info) != 8 || channels < 1 || channels > 4 ||
      row_bytes != (size_t)width * (size_t)channels)
    return grad__fail(GRAD_E_INTERNAL, "%s: PNG expands to %d channels of %d bits", job->name,
                      channels, png_get_bit_depth(png, info));
  int out_channels = channels <= 2 ? 1 : 3;
  s = grad__image_new(job->name, (int)width, (int)height, out_channels, &job->image);
  if (s != GRAD_OK) return s;
  unsigned char *target = job->image->pixels;
  if (channels != out_channels) {
    job->buffer = grad__malloc_array(height, row_bytes);
    if (!job->buffer) return grad__fail(GRAD_E_NOMEM, "%s: out of memory decoding PNG", job->name);
    target = job->buffer;
  }
  job->rows = grad__malloc_array(height, sizeof *job->rows);
  if (!job->rows) return grad__fail(GRAD_E_NOMEM, "%s: out of memory decoding PNG", job->name);
  for (png_uint_32 y = 0; y < height; y++) job->rows[y] = target + (size_t)y * row_bytes;
  png_read_image(png, job->rows);
  png_read_end(png, NULL);

  if (channels != out_channels) { /* drop the alpha sample of every pixel */
    size_t pixels = (size_t)width * height;
    const unsigned char *in = job->buffer;
    unsigned char *o = job->image->pixels;
    for (size_t i = 0; i < pixels; i++, in += channels, o += out_channels)
      memcpy(o, in, (size_t)out_channels);
  }
  return GRAD_OK;
}

static uint32_t be32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * The budgets that must hold before libpng runs, from the chunk list: the
 * declared size against the file's bytes, and the compressed image data
 * (IDAT) against what the pixels can need - libpng inflates any surplus
 * after the last row to discard it (1 MB of IDAT can hold a gigabyte).
 * A malformed chunk list is left for libpng to report.
 */
static grad_status png_check_budgets(const unsigned char *data, size_t size, const char *name) {
  size_t at = sizeof png_signature;
  if (size < at + 8 + 13 + 4 || be32(data + at) != 13 || memcmp(data + at + 4, "IHDR", 4))
    return GRAD_OK;
  const unsigned char *ihdr = data + at + 8;
  uint64_t width = be32(ihdr), height = be32(ihdr + 4);
  unsigned depth = ihdr[8], color = ihdr[9], interlaced = ihdr[12];
  static const unsigned samples[7] = {1, 0, 3, 1, 2, 0, 4};
  if (width == 0 || height == 0 || color > 6 || !samples[color]) return GRAD_OK;
  grad_status s = grad__image_check_size(name, width, height);
  if (s == GRAD_OK) s = grad__image_check_density(name, width, height, size);
  if (s != GRAD_OK) return s;
  uint64_t row = (width * samples[color] * depth + 7) / 8 + 1; /* with the filter byte */
  uint64_t need = height * row * (interlaced ? 2 : 1);
  need += need / 8 + 1024; /* deflate's worst case is far below this */
  uint64_t idat = 0;
  while (at + 12 <= size) {
    uint64_t length = be32(data + at);
    if (length > size - at - 12) break;
    if (!memcmp(data + at + 4, "IDAT", 4)) idat += length;
    if (!memcmp(data + at + 4, "IEND", 4)) break;
    at += 12 + (size_t)length;
  }
  uint64_t surplus = grad__png_max_surplus();
  if (idat > need + surplus)
    return grad__fail(GRAD_E_TOO_LARGE,
                      "%s: PNG holds %llu bytes of compressed image data where its %llu x %llu "
                      "pixels need at most %llu; the surplus is over the limit of %llu bytes "
                      "(max_png_surplus_bytes: raise it with grad_image_limits_set)",
                      name, (unsigned long long)idat, (unsigned long long)width,
                      (unsigned long long)height, (unsigned long long)need,
                      (unsigned long long)surplus);
  return GRAD_OK;
}

grad_status grad__png_decode(const unsigned char *data, size_t size, const char *name,
                             grad_image **out) {
  *out = NULL;
  grad_status budget = png_check_budgets(data, size, name);
  if (budget != GRAD_OK) return budget;
  png_job job;
  memset(&job, 0, sizeof job);
  job.name = name;
  job.data = data;
  job.size = size;
  job.png = grad__png_create_read(&job.status);
  if (job.png) job.info = png_create_info_struct(job.png);
  grad_status s;
  if (!job.png || !job.info)
    s = grad__fail(GRAD_E_NOMEM, "%s: out of memory starting the PNG decoder", name);
  else
    s = png_run(&job);
  if (job.png) png_destroy_read_struct(&job.png, job.info ? &job.info : NULL, NULL);
  grad__free(job.rows);
  grad__free(job.buffer);
  if (s != GRAD_OK) {
    grad_image_free(job.image);
    return s;
  }
  *out = job.image;
  return GRAD_OK;
}

/* ---- JPEG ------------------------------------------------------------ */

typedef struct jpeg_job {
  struct jpeg_decompress_struct cinfo;
  struct jpeg_error_mgr err;
  struct jpeg_progress_mgr progress;
  jmp_buf jump;
  grad_status status; /* of the failure that jumped */
  char message[JMSG_LENGTH_MAX];
  const char *name;
  uint32_t max_scans;
  unsigned char *row; /* one CMYK row */
  grad_image *image;
} jpeg_job;

static grad_status jpeg_status_of(int code) {
  switch (code) {
  case JERR_OUT_OF_MEMORY:
    return GRAD_E_NOMEM;
  case JERR_BAD_PRECISION:
  case JERR_NOT_COMPILED:
  case JERR_CONVERSION_NOTIMPL:
  case JERR_ARITH_NOTIMPL:
  case JERR_NOTIMPL:
  case JERR_SOF_UNSUPPORTED:
    return GRAD_E_UNSUPPORTED;
  default:
    return GRAD_E_FORMAT;
  }
}

static _Noreturn void jpeg_jump(j_common_ptr cinfo, grad_status status) {
  jpeg_job *job = cinfo->client_data;
  cinfo->err->format_message(cinfo, job->message);
  job->status = status;
  longjmp(job->jump, 1);
}

static void jpeg_on_error(j_common_ptr cinfo) {
  jpeg_jump(cinfo, jpeg_status_of(cinfo->err->msg_code));
}

/*
 * Level -1 is a warning. libjpeg pads a file that ends early with gray and
 * only warns; a truncated file is an error here. Other warnings (stray
 * bytes between markers and the like) are tolerated, as PIL does.
 */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_jump(cinfo, GRAD_E_FORMAT);
  cinfo->err->num_warnings++;
}

static void jpeg_print_nothing(j_common_ptr cinfo) { (void)cinfo; }

/* Progressive JPEGs can declare thousands of tiny scans, each a pass over
 * the whole coefficient buffer; real encoders write about ten. */
static void jpeg_on_progress(j_common_ptr cinfo) {
  j_decompress_ptr d = (j_decompress_ptr)cinfo;
  jpeg_job *job = cinfo->client_data;
  if ((uint32_t)d->input_scan_number > job->max_scans) {
    snprintf(job->message, sizeof job->message,
             "more than %u scans (max_jpeg_scans: raise it with grad_image_limits_set)",
             job->max_scans);
    job->status = GRAD_E_TOO_LARGE;
    longjmp(job->jump, 1);
  }
}

/*
 * PIL's reading of a 4-component JPEG: the samples are Adobe's inverted
 * CMYK (PIL always assumes so; libjpeg has already turned YCCK into CMYK),
 * then Image.convert("RGB") computes, in 8-bit integers,
 * R = (255 - K) - round((255 - C) * (255 - K) / 255) with C, K un-inverted.
 */
static void cmyk_inverted_to_rgb(const unsigned char *in, unsigned char *out, int width) {
  for (int x = 0; x < width; x++, in += 4, out += 3) {
    int nk = in[3]; /* 255 - K */
    for (int c = 0; c < 3; c++) {
      int t = (255 - in[c]) * nk + 128;
      out[c] = (unsigned char)(nk - (((t >> 8) + t) >> 8));
    }
  }
}

static grad_status jpeg_run(jpeg_job *job, const unsigned char *data, size_t size) {
  if (setjmp(job->jump)) {
    switch (job->status) {
    case GRAD_E_NOMEM:
      return grad__fail(GRAD_E_NOMEM, "%s: out of memory decoding JPEG: %s", job->name,
                        job->message);
    case GRAD_E_UNSUPPORTED:
      return grad__fail(GRAD_E_UNSUPPORTED, "%s: unsupported JPEG: %s", job->name, job->message);
    case GRAD_E_TOO_LARGE:
      return grad__fail(GRAD_E_TOO_LARGE, "%s: JPEG over a decoding budget: %s", job->name,
                        job->message);
    default:
      return grad__fail(GRAD_E_FORMAT, "%s: corrupt JPEG: %s", job->name, job->message);
    }
  }
  j_decompress_ptr cinfo = &job->cinfo;
  jpeg_create_decompress(cinfo);
  cinfo->progress = &job->progress;
  jpeg_mem_src(cinfo, data, (unsigned long)size);
  jpeg_read_header(cinfo, TRUE);
  grad_status s = grad__image_check_size(job->name, cinfo->image_width, cinfo->image_height);
  if (s != GRAD_OK) return s;
  /* libjpeg fills scans cut short with gray, so a few hundred bytes could
   * make it decode hundreds of megapixels. Even a flat image costs about a
   * bit per 8 x 8 block (~500 pixels a byte). */
  s = grad__image_check_density(job->name, cinfo->image_width, cinfo->image_height, size);
  if (s != GRAD_OK) return s;

  int channels;
  bool cmyk = false;
  switch (cinfo->jpeg_color_space) {
  case JCS_GRAYSCALE:
    cinfo->out_color_space = JCS_GRAYSCALE;
    channels = 1;
    break;
  case JCS_YCbCr:
  case JCS_RGB:
    cinfo->out_color_space = JCS_RGB;
    channels = 3;
    break;
  case JCS_CMYK:
  case JCS_YCCK:
    cinfo->out_color_space = JCS_CMYK;
    channels = 3;
    cmyk = true;
    break;
  default:
    return grad__fail(GRAD_E_UNSUPPORTED, "%s: unsupported JPEG: %d components of unknown colour",
                      job->name, cinfo->num_components);
  }
  /* Decoder defaults (accurate integer IDCT, fancy upsampling, block
   * smoothing) are PIL's, so the pixels match PIL's exactly. */
  jpeg_start_decompress(cinfo);
  int width = (int)cinfo->output_width, height = (int)cinfo->output_height;
  if (cinfo->output_width != cinfo->image_width || cinfo->output_height != cinfo->image_height ||
      cinfo->output_components != (cmyk ? 4 : channels))
    return grad__fail(GRAD_E_INTERNAL, "%s: JPEG decoder output %u x %u x %d is unexpected",
                      job->name, cinfo->output_width, cinfo->output_height,
                      cinfo->output_components);
  s = grad__image_new(job->name, width, height, channels, &job->image);
  if (s != GRAD_OK) return s;
  if (cmyk) {
    job->row = grad__malloc_array((size_t)width, 4);
    if (!job->row) return grad__fail(GRAD_E_NOMEM, "%s: out of memory decoding JPEG", job->name);
  }
  size_t stride = (size_t)width * (size_t)channels;
  while (cinfo->output_scanline < cinfo->output_height) {
    unsigned char *dst = job->image->pixels + (size_t)cinfo->output_scanline * stride;
    JSAMPROW row = cmyk ? job->row : dst;
    if (jpeg_read_scanlines(cinfo, &row, 1) != 1)
      return grad__fail(GRAD_E_INTERNAL, "%s: JPEG decoder returned no scanline", job->name);
    if (cmyk) cmyk_inverted_to_rgb(job->row, dst, width);
  }
  /* Not jpeg_finish_decompress: all pixels are in, and whatever follows
   * the last scan (a missing EOI, trailing bytes) does not change them. */
  return GRAD_OK;
}

grad_status grad__jpeg_decode(const unsigned char *data, size_t size, const char *name,
                              grad_image **out) {
  *out = NULL;
  jpeg_job job;
  memset(&job, 0, sizeof job);
  job.name = name;
  job.max_scans = grad__jpeg_max_scans();
  job.cinfo.err = jpeg_std_error(&job.err);
  job.err.error_exit = jpeg_on_error;
  job.err.emit_message = jpeg_on_message;
  job.err.output_message = jpeg_print_nothing;
  job.cinfo.client_data = &job;
  job.progress.progress_monitor = jpeg_on_progress;
  grad_status s = jpeg_run(&job, data, size);
  jpeg_destroy_decompress(&job.cinfo);
  grad__free(job.row);
  if (s != GRAD_OK) {
    grad_image_free(job.image);
    return s;
  }
  *out = job.image;
  return GRAD_OK;
}
