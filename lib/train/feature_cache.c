/* The training feature cache: a heap block, or an unlinked mmap'ed file. */
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "feature_cache.h"

struct grad__feature_cache {
  int images, channels, height, width;
  size_t image_floats;  /* C*H*W */
  size_t bytes;
  float *data;
  bool spilled;         /* data is a mapping of `bytes`, not a heap block */
  bool borrowed;        /* data is the caller's, read-only (grad__feature_cache_wrap) */
};

/* A temporary file of `bytes` in dir, unlinked at once and fully reserved,
 * mapped read-write. */
static grad_status map_spill_file(const char *dir, size_t bytes, float **out) {
  *out = NULL;
  size_t len = strlen(dir) + 32;
  char *path = grad__malloc(len);
  if (!path) return grad__fail(GRAD_E_NOMEM, "out of memory for a spill file name");
  snprintf(path, len, "%s/grad-features-XXXXXX", dir);
  int fd = mkstemp(path);
  if (fd < 0) {
    grad_status st = grad__fail(GRAD_E_IO, "feature cache: cannot create a spill file in %s: %s",
                                dir, strerror(errno));
    grad__free(path);
    return st;
  }
  unlink(path);
  grad__free(path);
  int err = posix_fallocate(fd, 0, (off_t)bytes);
  if (err != 0) {
    close(fd);
    return grad__fail(GRAD_E_IO, "feature cache: cannot reserve %zu bytes in %s: %s", bytes, dir,
                      strerror(err));
  }
  void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int map_errno = errno;
  close(fd); /* the mapping keeps the file alive */
  if (map == MAP_FAILED)
    return grad__fail(GRAD_E_IO, "feature cache: cannot map %zu bytes of the spill file: %s",
                      bytes, strerror(map_errno));
  *out = map;
  return GRAD_OK;
}

/* The handle of a cache of this shape, without its data. */
static grad_status cache_shell(int images, int channels, int height, int width,
                               grad__feature_cache **out) {
  *out = NULL;
  if (images <= 0 || channels <= 0 || height <= 0 || width <= 0)
    return grad__fail(GRAD_E_INVALID_ARG, "feature cache of %d x %d x %d x %d", images, channels,
                      height, width);
  size_t image_floats, total, bytes;
  if (!grad__mul_size((size_t)channels * (size_t)height, (size_t)width, &image_floats) ||
      !grad__mul_size(image_floats, (size_t)images, &total) ||
      !grad__mul_size(total, sizeof(float), &bytes))
    return grad__fail(GRAD_E_TOO_LARGE, "feature cache of %d x %d x %d x %d overflows", images,
                      channels, height, width);
  grad__feature_cache *cache = grad__calloc(1, sizeof *cache);
  if (!cache) return grad__fail(GRAD_E_NOMEM, "out of memory for the feature cache");
  cache->images = images;
  cache->channels = channels;
  cache->height = height;
  cache->width = width;
  cache->image_floats = image_floats;
  cache->bytes = bytes;
  *out = cache;
  return GRAD_OK;
}

grad_status grad__feature_cache_wrap(const float *data, int images, int channels, int height,
                                     int width, grad__feature_cache **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__feature_cache_wrap: out is NULL");
  *out = NULL;
  if (!data) return grad__fail(GRAD_E_INVALID_ARG, "grad__feature_cache_wrap: data is NULL");
  grad_status st = cache_shell(images, channels, height, width, out);
  if (st != GRAD_OK) return st;
  (*out)->data = (float *)(uintptr_t)data; /* only read: grad__feature_cache_image refuses it */
  (*out)->borrowed = true;
  return GRAD_OK;
}

grad_status grad__feature_cache_create(int images, int channels, int height, int width,
                                       size_t memory_limit, const char *spill_dir,
                                       grad__feature_cache **out) {
  if (!out) return grad__fail(GRAD_E_INVALID_ARG, "grad__feature_cache_create: out is NULL");
  *out = NULL;
  grad__feature_cache *cache = NULL;
  grad_status shell = cache_shell(images, channels, height, width, &cache);
  if (shell != GRAD_OK) return shell;
  size_t bytes = cache->bytes, total = bytes / sizeof(float);
  if (memory_limit == 0) memory_limit = GRAD__FEATURE_CACHE_DEFAULT_LIMIT;
  if (bytes <= memory_limit) {
    cache->data = grad__calloc(total, sizeof(float));
    if (!cache->data) {
      grad__free(cache);
      return grad__fail(GRAD_E_NOMEM, "out of memory for a %zu-byte feature cache", bytes);
    }
  } else {
    const char *dir = spill_dir;
    if (!dir || !*dir) dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    grad_status st = map_spill_file(dir, bytes, &cache->data);
    if (st != GRAD_OK) {
      grad__free(cache);
      return st;
    }
    cache->spilled = true;
  }
  *out = cache;
  return GRAD_OK;
}

void grad__feature_cache_free(grad__feature_cache *cache) {
  if (!cache) return;
  if (cache->spilled)
    munmap(cache->data, cache->bytes);
  else if (!cache->borrowed)
    grad__free(cache->data);
  grad__free(cache);
}

int grad__feature_cache_count(const grad__feature_cache *cache) { return cache->images; }
int grad__feature_cache_channels(const grad__feature_cache *cache) { return cache->channels; }
int grad__feature_cache_height(const grad__feature_cache *cache) { return cache->height; }
int grad__feature_cache_width(const grad__feature_cache *cache) { return cache->width; }
bool grad__feature_cache_spilled(const grad__feature_cache *cache) { return cache->spilled; }
size_t grad__feature_cache_bytes(const grad__feature_cache *cache) { return cache->bytes; }

float *grad__feature_cache_image(grad__feature_cache *cache, int index) {
  if (!cache || cache->borrowed || index < 0 || index >= cache->images) return NULL;
  return cache->data + (size_t)index * cache->image_floats;
}

const float *grad__feature_cache_image_const(const grad__feature_cache *cache, int index) {
  if (!cache || index < 0 || index >= cache->images) return NULL;
  return cache->data + (size_t)index * cache->image_floats;
}

grad_status grad__feature_cache_gather(const grad__feature_cache *cache, const int *indices,
                                       int count, float *out) {
  if (!cache || (count > 0 && (!indices || !out)) || count < 0)
    return grad__fail(GRAD_E_INVALID_ARG, "grad__feature_cache_gather: NULL argument");
  for (int i = 0; i < count; i++) {
    const float *src = grad__feature_cache_image_const(cache, indices[i]);
    if (!src)
      return grad__fail(GRAD_E_INVALID_ARG, "feature cache: image %d of %d requested",
                        indices[i], cache->images);
    memcpy(out + (size_t)i * cache->image_floats, src, cache->image_floats * sizeof(float));
  }
  return GRAD_OK;
}
