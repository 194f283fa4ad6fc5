/* tr_tboard: test driver for train/tboard.
 *   tr_tboard vectors     check CRC-32C and the event/record test vectors of formats.md 7.2
 *   tr_tboard write DIR   write an event file with known scalars; print its path
 */
#include <stdio.h>
#include <string.h>

#include "ft_common.h"
#include "tboard.h"

static int same(const char *what, const uint8_t *got, size_t n, const uint8_t *want, size_t m) {
    if (n == m && !memcmp(got, want, n)) return 1;
    printf("FAIL %s: got %zu bytes:", what, n);
    for (size_t i = 0; i < n; i++) printf(" %02x", got[i]);
    printf("\n");
    return 0;
}

static int vectors(void) {
    int ok = 1;
    uint32_t c = ft_crc32c("123456789", 9);
    if (c != 0xE3069283u) {
        printf("FAIL crc32c(123456789) = %08x\n", c);
        ok = 0;
    }
    static const uint8_t ev[] = {0x09, 0x00, 0x00, 0x20, 0x40, 0xfc, 0x54, 0xd9, 0x41,
                                 0x10, 0x0a, 0x2a, 0x0d, 0x0a, 0x0b, 0x0a, 0x04, 0x6c,
                                 0x6f, 0x73, 0x73, 0x15, 0x00, 0x00, 0x00, 0x3f};
    uint8_t buf[256], rec[256];
    size_t n = ft_tb_event_scalar(buf, sizeof buf, 1700000000.5, 10, "loss", 0.5f);
    ok &= same("scalar event", buf, n, ev, sizeof ev);
    static const uint8_t head[] = {0x1a, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x9b, 0xd8, 0x2d};
    static const uint8_t tail[] = {0x3e, 0xce, 0xe2, 0xa6};
    uint8_t want[sizeof head + sizeof ev + sizeof tail];
    memcpy(want, head, sizeof head);
    memcpy(want + sizeof head, ev, sizeof ev);
    memcpy(want + sizeof head + sizeof ev, tail, sizeof tail);
    size_t r = ft_tb_record(rec, sizeof rec, buf, n);
    ok &= same("scalar record", rec, r, want, sizeof want);
    static const uint8_t ver[] = {0x18, 0,    0,    0,   0,   0,   0,    0,    0xa3, 0x7f,
                                  0x4b, 0x22, 0x09, 0,   0,   0,   0x40, 0xfc, 0x54, 0xd9,
                                  0x41, 0x1a, 0x0d, 'b', 'r', 'a', 'i',  'n',  '.',  'E',
                                  'v',  'e',  'n',  't', ':', '2', 0xec, 0xed, 0x8f, 0x9d};
    n = ft_tb_event_version(buf, sizeof buf, 1700000000.0, 0);
    r = ft_tb_record(rec, sizeof rec, buf, n);
    ok &= same("version record", rec, r, ver, sizeof ver);
    /* step 0 is omitted (proto3 default); simple_value 0.0 is still written */
    n = ft_tb_event_scalar(buf, sizeof buf, 1.0, 0, "t", 0.0f);
    static const uint8_t ev0[] = {0x09, 0,    0,    0,    0,   0,    0, 0xf0, 0x3f, 0x2a, 0x0a,
                                  0x0a, 0x08, 0x0a, 0x01, 't', 0x15, 0, 0,    0,    0};
    ok &= same("step-0 event", buf, n, ev0, sizeof ev0);
    printf("%s\n", ok ? "vectors ok" : "vectors FAILED");
    return ok ? 0 : 1;
}

static int write_file(const char *dir) {
    ft_tboard *tb;
    char err[512];
    if (ft_tboard_open(&tb, dir, 1700000000.0, err, sizeof err)) {
        printf("ERROR: %s\n", err);
        return 2;
    }
    char longtag[301];
    memset(longtag, 'x', 300);
    longtag[300] = '\0';
    int rc = ft_tboard_scalar(tb, "loss", 0.5f, 10, 1700000000.5);
    rc |= ft_tboard_scalar(tb, "learning_rate", 0.1f, 20, 1700000001.25);
    rc |= ft_tboard_scalar(tb, "lfw", 0.97125f, 2000, 1700000002.0);
    rc |= ft_tboard_scalar(tb, "time_for_end", -3.25f, 0, 1700000003.0);
    rc |= ft_tboard_scalar(tb, longtag, 1e-20f, 1099511627776LL, 1700000004.0);
    printf("%s\n", ft_tboard_path(tb));
    ft_tboard_close(tb);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (ft_cli_help_version(argc, argv, "tr_tboard", "usage: tr_tboard vectors | write DIR\n"))
        return 0;
    if (argc == 2 && !strcmp(argv[1], "vectors")) return vectors();
    if (argc == 3 && !strcmp(argv[1], "write")) return write_file(argv[2]);
    fprintf(stderr, "usage: tr_tboard vectors | write DIR\n");
    return 1;
}
