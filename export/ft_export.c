/* ft-export: an ft-train checkpoint -> ONNX (the graph torch2onnx.py exports). See
 * docs/export.md and export/graph/graph.h.
 *
 *   ft-export CKPT_DIR [-o FILE] [--opset N] [--fold-bn] [--fp16]
 *
 * Reads CKPT_DIR/backbone.safetensors and the architecture ft-train recorded in it, writes
 * FILE (default CKPT_DIR/backbone.onnx) atomically and prints one line about it on stdout.
 * Exit status: 0 written, 1 error (one line "ft-export: file: reason", nothing written),
 * 2 usage, 130 stopped by a signal (SIGINT/SIGTERM/SIGHUP; nothing written).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "ft_common.h" // defines: FT_VERSION_STRING, ft_parse_i64, ft_now
#include "graph.h"     // defines: ft_graph_export

#define PROG "ft-export"

static void usage(FILE *f) {
    fprintf(f,
            "usage: " PROG " CKPT_DIR [-o FILE] [--opset N] [--fold-bn] [--fp16]\n"
            "Write the IResNet of an ft-train checkpoint (CKPT_DIR/backbone.safetensors) as\n"
            "ONNX: input 'data' float32 [N,3,112,112] with a symbolic batch, output the\n"
            "embedding [N,emb], eval-mode BatchNormalization, fp32 initializers.\n"
            "  -o, --output FILE  where to write (default CKPT_DIR/" FT_GRAPH_ONNX_NAME ")\n"
            "      --opset N      ONNX opset, %d..%d (default %d)\n"
            "      --fold-bn      fold the BNs that follow a conv into it (exact; the graph\n"
            "                     torch2onnx.py exports)\n"
            "      --fp16         a float16 graph for deployment (float32 input and output);\n"
            "                     submission checks reject its fp16 weights\n"
            "  -h, --help         this help\n"
            "  -V, --version      print the version\n"
            "See docs/export.md.\n",
            FT_GRAPH_OPSET_MIN, FT_GRAPH_OPSET_MAX, FT_GRAPH_OPSET_DEFAULT);
}

int main(int argc, char **argv) {
    static const struct option longopts[] = {{"output", required_argument, NULL, 'o'},
                                             {"opset", required_argument, NULL, 'p'},
                                             {"fold-bn", no_argument, NULL, 'f'},
                                             {"fp16", no_argument, NULL, 'x'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    ft_graph_opts o;
    ft_graph_opts_init(&o);
    const char *out = NULL;
    int opt;
    /* -o FILE: output; --opset N; --fold-bn; --fp16; -h: help; -V: version */
    while ((opt = getopt_long(argc, argv, "o:hV", longopts, NULL)) != -1) {
        switch (opt) {
        case 'o':
            out = optarg;
            break;
        case 'p': {
            int64_t v;
            if (ft_parse_i64(optarg, FT_GRAPH_OPSET_MIN, FT_GRAPH_OPSET_MAX, &v)) {
                fprintf(stderr, PROG ": --opset '%s': give an opset from %d to %d\n", optarg,
                        FT_GRAPH_OPSET_MIN, FT_GRAPH_OPSET_MAX);
                return 2;
            }
            o.opset = (int)v;
            break;
        }
        case 'f':
            o.fold_bn = 1;
            break;
        case 'x':
            o.fp16 = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("%s\n", FT_VERSION_STRING);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 1) {
        usage(stderr);
        return 2;
    }
    const char *dir = argv[optind];
    char path[4096], err[2048];
    if (!out) {
        if (ft_path_join(path, sizeof path, dir, FT_GRAPH_ONNX_NAME)) {
            fprintf(stderr, PROG ": %s: path too long\n", dir);
            return 1;
        }
        out = path;
    }
    ft_graph_info info;
    double t0 = ft_now();
    ft_stop_install();
    int rc = ft_graph_export(dir, out, &o, &info, err, sizeof err);
    if (rc) {
        fprintf(stderr, PROG ": %s\n", err);
        return rc == FT_ESTOP ? 130 : 1;
    }
    printf("%s: %d nodes, %d initializers, %.2f M parameters, %.1f MiB, opset %d, %s%s, "
           "%.2f s\n",
           out, info.nodes, info.initializers, (double)info.params / 1e6,
           (double)info.bytes / 1048576.0, o.opset, o.fp16 ? "fp16" : "fp32",
           o.fold_bn ? ", BN folded" : "", ft_now() - t0);
    return fflush(stdout) == 0 ? 0 : 1;
}
