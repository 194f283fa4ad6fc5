/* tboard: TensorBoard event files with scalar summaries (formats.md section 7), as
 * torch.utils.tensorboard.SummaryWriter.add_scalar writes them.
 *
 * A file is a sequence of TFRecords: uint64 length, uint32 masked CRC-32C of the length bytes,
 * the data (one serialized tensorflow Event), uint32 masked CRC-32C of the data. The first
 * Event carries file_version "brain.Event:2" and source_metadata; each scalar is an Event
 * {wall_time, step, summary {value {tag, simple_value}}}. The file is
 * <logdir>/events.out.tfevents.<%010d seconds>.<hostname>.<pid>.<n>, n counting files opened
 * by this process from 0. Every event is flushed to the file when written, so a reader sees
 * whole records (it must still tolerate a truncated last record after a crash).
 */
#ifndef FT_TBOARD_H
#define FT_TBOARD_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C (Castagnoli, reflected 0x82F63B78); crc32c("123456789") = 0xE3069283. */
uint32_t ft_crc32c(const void *data, size_t len);
/* ((crc >> 15) | (crc << 17)) + 0xA282EAD8 */
uint32_t ft_crc32c_masked(const void *data, size_t len);

/* Serialized Events into out (cap bytes); return the length needed (nothing written beyond
 * cap). A negative wall_time is not special here. */
size_t ft_tb_event_scalar(uint8_t *out, size_t cap, double wall_time, int64_t step, const char *tag,
                          float value);
size_t ft_tb_event_version(uint8_t *out, size_t cap, double wall_time, int source_metadata);
/* TFRecord framing of data into out; returns len + 16. */
size_t ft_tb_record(uint8_t *out, size_t cap, const uint8_t *data, size_t len);

typedef struct ft_tboard ft_tboard;

/* Create logdir (mkdir -p) and the event file, write the version event.
 * wall_time < 0 means now. Errors: "path: reason" in err. */
int ft_tboard_open(ft_tboard **out, const char *logdir, double wall_time, char *err, size_t errcap);
/* add_scalar(tag, value, step); wall_time < 0 means now. 0 or -errno. */
int ft_tboard_scalar(ft_tboard *tb, const char *tag, float value, int64_t step, double wall_time);
const char *ft_tboard_path(const ft_tboard *tb);
void ft_tboard_close(ft_tboard *tb); /* NULL ok */

#endif
