"""Reference for ft-train config lines: Python executes the config file with a stand-in for
easydict, merges it over configs/base.py's defaults in dict order (arcface_torch's get_config),
applies overrides, and formats `": " + key + " "*(25-len(key)) + str(value)`.
Shared by test_config.py and test_trainlog.py."""
import os

BASE = [("margin_list", (1.0, 0.5, 0.0)), ("network", "r50"), ("resume", False),
        ("save_all_states", False), ("output", None), ("embedding_size", 512),
        ("sample_rate", 1), ("interclass_filtering_threshold", 0), ("fp16", False),
        ("batch_size", 128), ("optimizer", "sgd"), ("lr", 0.1), ("momentum", 0.9),
        ("weight_decay", 5e-4), ("verbose", 2000), ("frequent", 10), ("dali", False),
        ("gradient_acc", 1), ("seed", 2048), ("num_workers", 2)]
LATE = [("rec", None), ("num_classes", None), ("num_image", None), ("num_epoch", 20),
        ("warmup_epoch", 0), ("val_targets", ['lfw', 'cfp_fp', 'agedb_30']),
        ("dali_aug", False), ("max_steps", None), ("width", None), ("blocks", None),
        ("dropout", 0.0), ("threads", 0), ("pfc_update", "sampled"), ("strict_targets", False),
        ("dtype", None), ("device", "auto"), ("layout", "auto"), ("max_skipped_steps", 20),
        ("export_onnx", True), ("dist_timeout", 300), ("ddp_overlap", True),
        ("ddp_bucket_view", True), ("cuda_graphs", False)]

class EDict(dict):
    def __setattr__(self, k, v):
        self[k] = v

    def __getattr__(self, k):
        return self[k]


def literal_value(text):
    try:
        return eval(text, {"__builtins__": {}}, {})
    except Exception:
        return text  # the tool takes a bare word as a string


def reference(path, overrides=(), dataset=None):
    ns = {"edict": EDict}
    src = open(path).read().replace("from easydict import EasyDict as edict", "")
    exec(src, ns)
    cfg = dict(BASE)
    cfg.update(ns["config"])
    for kv in overrides:
        k, v = kv.split("=", 1)
        cfg[k.removeprefix("config.")] = literal_value(v)
    if cfg["output"] is None:
        cfg["output"] = "work_dirs/" + os.path.splitext(os.path.basename(path))[0]
    for k, v in LATE:
        cfg.setdefault(k, v)
    if dataset:
        images, classes = dataset
        if cfg["num_image"] is None:
            cfg["num_image"] = images
        cfg["total_batch_size"] = cfg["batch_size"]
        cfg["warmup_step"] = cfg["num_image"] // cfg["total_batch_size"] * cfg["warmup_epoch"]
        cfg["total_step"] = cfg["num_image"] // cfg["total_batch_size"] * cfg["num_epoch"]
    return [": " + k + " " * (25 - len(k)) + str(v) for k, v in cfg.items()]
