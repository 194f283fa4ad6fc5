/* ft-check: the submission checks of onnx_helper.py on a model folder, each rule on its own
 * line, then PASS (exit 0) or FAIL: <rule> (exit 1). See docs/inference.md.
 *
 *   ft-check MODEL_DIR [--track cfat|ms1m|glint|unconstrained] [--image FILE.jpg] [--ort]
 *            [--threads N] [--device cpu|cuda] [--graphs] [--max-latency MS] */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ft_common.h"

#define PROG "ft-check"

static const char usage[] =
    "usage: ft-check MODEL_DIR [--track cfat|ms1m|glint|unconstrained] [--image FILE.jpg]\n"
    "                [--ort] [--threads N] [--device cpu|cuda] [--graphs]\n"
    "  MODEL_DIR    folder with the .onnx to submit (the lexicographically last one is checked)\n"
    "  --track T    limits of the track (default cfat)\n"
    "  --image F    JPEG test image (default: a built-in synthetic pattern)\n"
    "  --ort        also time onnxruntime through python3 (FT_PYTHON names the interpreter);\n"
    "               its latency is then the one held against the track's limit\n"
    "  --threads N  CPU threads for the engine and onnxruntime (default: all cores)\n"
    "  --device D   engine backend (default cpu)\n"
    "  --graphs     the engine replays each batch size's forward from a CUDA graph (cuda)\n"
    "  --max-latency MS  hold the latency against MS instead of the track's limit (hardware\n"
    "               other than the competition's)\n"
    "exit 0: PASS, 1: FAIL, 2: bad arguments\n";

int main(int argc, char **argv) {
    static const struct option lo[] = {
        {"track", required_argument, 0, 'k'},  {"image", required_argument, 0, 'i'},
        {"ort", no_argument, 0, 'o'},          {"threads", required_argument, 0, 't'},
        {"device", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},      {"max-latency", required_argument, 0, 'm'},
        {"graphs", no_argument, 0, 'g'},       {0, 0, 0, 0}};
    ft_check_opts o = {0};
    o.track = "cfat", o.device = "cpu";
    int opt;
    uint64_t th = 0;
    /* --track T, --image F, --ort, --threads N, --device D, -h, -V */
    while ((opt = getopt_long(argc, argv, "hV", lo, NULL)) != -1) {
        switch (opt) {
        case 'k':
            o.track = optarg;
            break;
        case 'i':
            o.image = optarg;
            break;
        case 'o':
            o.ort = 1;
            break;
        case 'g':
            o.graphs = 1;
            break;
        case 'd':
            o.device = optarg;
            break;
        case 't':
            if (ft_parse_u64(optarg, 0, 1024, &th)) {
                fprintf(stderr, PROG ": --threads: '%s' is not in 0..1024\n", optarg);
                return 2;
            }
            o.threads = (int)th;
            break;
        case 'm':
            if (ft_parse_double(optarg, 1e-3, 1e9, &o.max_latency_ms)) {
                fprintf(stderr, PROG ": --max-latency: '%s' is not a positive number of ms\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf(PROG " (%s)\n", FT_VERSION_STRING);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (argc - optind != 1) {
        fputs(usage, stderr);
        return 2;
    }
    o.model_dir = argv[optind];
    int rc = ft_check_run(&o, stdout);
    if (rc < 0) {
        fprintf(stderr, PROG ": %s: %s\n", o.model_dir, ft_strerror(rc));
        return 1;
    }
    return rc;
}
