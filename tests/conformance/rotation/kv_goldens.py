#!/usr/bin/env python3
"""Keeps the kv / attention part of Quark's config.json for each kv_jobs.txt run (after
`JOBS=kv_jobs.txt rotation_check.sh` made them under $WORK/quark/) in
tests/data/rotation/kv_goldens.json, which tests/rotation_kv_config_test.cpp checks shardquant's
exported config against. Must not depend on shardquant.
Usage: kv_goldens.py WORK_DIR
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
work = sys.argv[1]
out = {}
with open(os.path.join(HERE, "kv_jobs.txt")) as f:
    for line in f:
        if not line.strip() or line.startswith("#"):
            continue
        run = line.split()[2]
        with open(os.path.join(work, run, "config.json")) as g:
            q = json.load(g)["quantization_config"]
        keys = ("layer_quant_config", "kv_cache_quant_config", "softmax_quant_spec", "export")
        out[os.path.basename(run)] = {k: q[k] for k in keys}
dst = os.path.join(HERE, "..", "..", "data", "rotation", "kv_goldens.json")
with open(dst, "w") as f:
    json.dump(out, f, separators=(",", ":"))
    f.write("\n")
print(f"kv_goldens: {len(out)} runs -> {os.path.normpath(dst)}")
