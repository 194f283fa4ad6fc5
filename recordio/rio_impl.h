/* rio_impl.h: helpers shared by the .c files of recordio; not part of the public API. */
#ifndef FT_RIO_IMPL_H
#define FT_RIO_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "recordio.h"

#if defined(__GNUC__)
#define RIO_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define RIO_PRINTF(a, b)
/* Private accessors for the files that build on the reader and writer. */
const char *rio_reader_path(const rio_reader *r);
const char *rio_writer_path(const rio_writer *w);
char *rio_writer_errbuf(rio_writer *w); /* [RIO_ERRCAP] message of the handle */

#endif

/* snprintf into err (NULL or errcap 0: nothing); returns rc so callers can `return rio_fail(...)`.
 */
int rio_fail(int rc, char *err, size_t errcap, const char *fmt, ...) RIO_PRINTF(4, 5);

/* pread/write that retry on EINTR and short transfers. rio_pread_full returns the bytes read
 * (fewer than n only at end of file) or -errno; rio_write_full returns 0 or -errno. */
ssize_t rio_pread_full(int fd, void *buf, size_t n, uint64_t off);
int rio_write_full(int fd, const void *buf, size_t n);

/* "<path>.tmp.<pid>", malloc'd; NULL when out of memory. */
char *rio_tmp_name(const char *path);
/* fsync and close fd (closed even on failure). 0 or -errno. */
int rio_sync_close(int fd);
/* rename tmp -> path, then fsync the folder holding path. 0 or -errno. */
int rio_rename_durable(const char *tmp, const char *path);

/* Private accessors for the files that build on the reader and writer. */
const char *rio_reader_path(const rio_reader *r);
const char *rio_writer_path(const rio_writer *w);
char *rio_writer_errbuf(rio_writer *w); /* [RIO_ERRCAP] message of the handle */

#endif
