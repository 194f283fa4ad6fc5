/* rendezvous.h: hand a small blob from rank 0 to every rank of a job over TCP, for the
 * bootstrap of a transport that needs one (NCCL's unique id) when no MPI started the job.
 *
 * Rank 0 listens on port (all interfaces) and accepts world - 1 peers; each peer connects to
 * addr:port, retrying until timeout_s, and sends its rank and the world size it was started
 * with; rank 0 checks both (a rank twice, a rank out of range, another world size: every
 * connected peer is told and both sides fail) and answers each with the blob. Every failure is
 * one line in err naming the address or the rank: "rank 2: cannot reach rank 0 at
 * 10.0.0.1:29500 within 300 s (Connection refused)". */
#ifndef FT_RENDEZVOUS_H
#define FT_RENDEZVOUS_H

#include <stddef.h>

#define FT_RDV_MAX_BLOB 4096

/* rank 0: blob (bytes) in, sent to all; others: blob out (bytes must match rank 0's).
 * 0, or FT_ETIMEDOUT-like codes: -ETIMEDOUT, -ECONNREFUSED, FT_EFORMAT (a mismatch). */
int ft_rendezvous(int rank, int world, const char *addr, int port, double timeout_s, void *blob,
                  size_t bytes, char *err, size_t errcap);

#endif
