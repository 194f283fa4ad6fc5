/* memory.c: the CPU backend's memory slots: "device" memory is host memory, 64-byte aligned. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "ft_common.h"

static int cpu_alloc(ft_ops *o, size_t bytes, void **dev) {
    size_t sz = (bytes + 63) / 64 * 64;
    if (sz == 0) sz = 64;
    void *p = aligned_alloc(64, sz);
    if (!p) return -ENOMEM;
    *dev = p;
    return 0;
}
static void cpu_free(ft_ops *o, void *dev) {
    free(dev);
}
/* host memory both ways: upload and download are copies */
static int cpu_upload(ft_ops *o, void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
    return 0;
}
int cpu_copy(ft_ops *o, void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memmove(dst, src, bytes);
    return 0;
}
static int cpu_zero(ft_ops *o, void *dev, size_t bytes) {
    if (bytes) memset(dev, 0, bytes);
    return 0;
}
static int cpu_sync(ft_ops *o) {
    return 0;
}
/* MemAvailable / MemTotal of /proc/meminfo (sysconf's physical pages when it cannot be read) */
static int cpu_mem_info(ft_ops *o, size_t *free_bytes, size_t *total_bytes) {
    unsigned long long avail = 0, total = 0, v;
    char line[256];
    FILE *f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %llu kB", &v) == 1) avail = v * 1024;
        if (sscanf(line, "MemTotal: %llu kB", &v) == 1) total = v * 1024;
    }
    if (f) fclose(f);
    if (!total) {
        long pages = sysconf(_SC_PHYS_PAGES), avp = sysconf(_SC_AVPHYS_PAGES);
        long pg = sysconf(_SC_PAGESIZE);
        if (pages <= 0 || pg <= 0) return FT_ENOTSUP;
        total = (unsigned long long)pages * (unsigned long long)pg;
        avail = avp > 0 ? (unsigned long long)avp * (unsigned long long)pg : 0;
    }
    *free_bytes = (size_t)avail, *total_bytes = (size_t)total;
    return 0;
}
/* host memory is all the CPU backend has: "pinned" is aligned */
static int cpu_host_alloc(ft_ops *o, size_t bytes, void **host) {
    return cpu_alloc(o, bytes, host);
}
static void cpu_host_free(ft_ops *o, void *host) {
    free(host);
}

void cpu_install_memory(ft_ops *o) {
    o->alloc = cpu_alloc;
    o->free = cpu_free;
    o->upload = cpu_upload;
    o->download = cpu_upload;
    o->copy = cpu_copy;
    o->zero = cpu_zero;
    o->sync = cpu_sync;
    o->mem_info = cpu_mem_info;
    o->host_alloc = cpu_host_alloc;
    o->host_free = cpu_host_free;
}
