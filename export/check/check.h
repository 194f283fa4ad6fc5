/* check: the submission checks of insightface's onnx_helper.py (ArcFaceORT.check), every rule
 * of formats.md 5.3 in the helper's order, run with facetrain's engine (and onnxruntime beside
 * it when asked and importable). Used by ft-check.
 *
 * Each rule prints one line "<rule> <value> <op> <limit> ok" (or "... FAIL") to out; the
 * first failing rule ends the run, as in the helper, and the last line is "PASS" or
 * "FAIL: <rule>". Differences from the helper, on purpose:
 *   - a fixed batch dimension is rewritten to dim_param "None" in memory (the helper writes
 *     zzzzrefined.onnx into the model folder; ft-check writes nothing there);
 *   - the latency is the engine's (the 6th fastest of 50 batch-1 runs); with ort = 1 the
 *     onnxruntime figure is measured beside it and is the one held against the limit, as the
 *     competition measures onnxruntime;
 *   - without an image a fixed synthetic pattern stands in for the helper's bundled photo. */
#ifndef FT_CHECK_H
#define FT_CHECK_H

#include <stdio.h>

typedef struct ft_check_opts {
    const char *model_dir;
    const char *track; /* "cfat" (default), "ms1m", "glint", "unconstrained" (prefixes) */
    const char *image; /* JPEG test image or NULL */
    int ort;           /* also time onnxruntime (python3 -c ...; FT_PYTHON names the binary) */
    int threads;       /* engine CPU threads, 0 = all (onnxruntime gets the same count) */
    const char *device;
    double max_latency_ms; /* > 0: this limit instead of the track's (other hardware) */
    int graphs;            /* the engine replays CUDA graphs (ft_engine_opts.graphs) */
} ft_check_opts;

/* 0 PASS, 1 FAIL (the reason is the last line of out), < 0 when the checks themselves could
 * not run (out of memory); messages go to out. */
int ft_check_run(const ft_check_opts *opts, FILE *out);

#endif
