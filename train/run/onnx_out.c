/* onnx_out.c: ft-train's export_onnx = True (the default): at the end of a run, the checkpoint
 * just written becomes <output>/backbone.onnx through ft_graph, the same bytes ft-export
 * writes from that folder (arcface_torch's train_v2 converts its model to ONNX the same way
 * when training ends). See run.h. */
#include <stdio.h>

#include "graph.h" // defines: ft_graph_export (export/graph)
#include "run.h"

int ft_run_export_onnx(ft_run *r) {
    if (!r->cfg.export_onnx || r->rank != 0) return 0;
    ft_graph_opts o;
    ft_graph_opts_init(&o);
    ft_graph_info info;
    char err[2048];
    double t0 = ft_now();
    int rc = ft_graph_export(r->cfg.output, NULL, &o, &info, err, sizeof err);
    if (rc == FT_ESTOP) { /* Ctrl-C while writing: a stopped run (exit 130), no file */
        fprintf(stderr, FT_TRAIN_PROG ": export_onnx: %s\n", err);
        r->stats.stopped = 1;
        return 0;
    }
    if (rc) return ft_run_fail(r, rc, "export_onnx: %s", err);
    fprintf(stderr,
            FT_TRAIN_PROG ": wrote %s/" FT_GRAPH_ONNX_NAME " (opset %d, %d nodes, %.1f MiB) in "
                          "%.2f s\n",
            r->cfg.output, o.opset, info.nodes, (double)info.bytes / 1048576.0, ft_now() - t0);
    return 0;
}
