/* ft_classdir: the class-folder convention, decided once for ft-pack and ft-ingest.
 *
 * ROOT holds one sub-folder per class. Labels 0..C-1 follow the byte order (strcmp) of the
 * sub-folder names; inside each, every regular file is a sample, in byte order of its name.
 *   - Hidden entries (names starting with '.') are skipped at both levels, silently.
 *   - An entry that cannot be stat'ed (a dangling symlink, no permission) is an error naming
 *     its path: a silently shorter sample list would hide the loss.
 *   - Files directly in ROOT are not samples: they are counted, and ft_classdir_warn prints
 *     one line for all of them. Entries in a class folder that are neither regular files nor
 *     hidden (sub-folders, sockets) are skipped and reported the same way.
 *   - A class folder without files keeps its label; ft_classdir_warn reports those in one line.
 * Whether a sample is a JPEG is for the caller to decide.
 */
#ifndef FT_CLASSDIR_H
#define FT_CLASSDIR_H

#include <stddef.h>
#include <stdint.h>

typedef struct ft_classdir_entry {
    uint64_t name_at; /* offset of the path relative to ROOT ("class/file") in names */
    int32_t label;
    uint64_t size; /* bytes, from stat */
} ft_classdir_entry;

typedef struct ft_classdir {
    ft_classdir_entry *e; /* [n], labels ascending, names ascending within a label */
    uint64_t n, cap;
    uint64_t n_classes;
    char *names; /* NUL-separated relative paths */
    size_t names_len, names_cap;
    uint64_t n_loose, n_other, n_empty; /* top-level files, odd entries, empty classes */
    char first_loose[256], first_other[512], first_empty[256];
} ft_classdir;

/* Scan ROOT (classes < 2^31). 0, or < 0 with "path: reason" in err; *d is then empty. */
int ft_classdir_scan(const char *root, ft_classdir *d, char *err, size_t errcap);
const char *ft_classdir_path(const ft_classdir *d, uint64_t i); /* relative to ROOT */
/* The warnings above, one stderr line per kind, as "prog: warning: ROOT: ...". */
void ft_classdir_warn(const ft_classdir *d, const char *root, const char *prog);
void ft_classdir_free(ft_classdir *d); /* leaves *d empty; an empty *d is fine */

#endif
