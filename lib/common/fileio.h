/*
 * Whole-file reading and atomic file writing. Saves go to a temporary file
 * in the target's folder, are fsync'ed and renamed over the target, so a
 * crash or a full disk leaves either the old file or the new one, never a
 * partial file.
 */
#ifndef GRAD_FILEIO_H
#define GRAD_FILEIO_H

#include <stdio.h>

#include "core.h"

/*
 * Opens path for reading, never blocking: a FIFO, device, socket or folder
 * is refused with GRAD_E_IO naming it and saying what it is. On success *fd
 * (blocking again, close it) and *size (its length in bytes). Every read of
 * a file the caller names goes through here.
 */
grad_status grad__open_regular(const char *path, int *fd, size_t *size);

/* Reads a whole file into a new buffer (grad__free it). Files larger than
 * max_bytes give GRAD_E_TOO_LARGE; a missing or unreadable file GRAD_E_IO. */
grad_status grad__read_file(const char *path, size_t max_bytes, unsigned char **data,
                            size_t *size);

typedef struct grad__atomic_file grad__atomic_file;

/* Opens "DIR/.NAME.XXXXXX" next to path for writing. */
grad_status grad__atomic_open(const char *path, grad__atomic_file **out);
/* The stdio stream to write to (fwrite errors are caught at commit). */
FILE *grad__atomic_stream(grad__atomic_file *file);
grad_status grad__atomic_write(grad__atomic_file *file, const void *data, size_t size);
/* Flushes, fsyncs, renames over the target and fsyncs the folder; frees file.
 * On any failure the temporary file is removed and the target is untouched. */
grad_status grad__atomic_commit(grad__atomic_file *file);
/* Removes the temporary file and frees file; NULL is a no-op. */
void grad__atomic_abort(grad__atomic_file *file);

/* One-shot: writes size bytes to path atomically. */
grad_status grad__write_file_atomic(const char *path, const void *data, size_t size);

#endif
