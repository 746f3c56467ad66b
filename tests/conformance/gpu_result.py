#!/usr/bin/env python3
"""Turns the files of a `gpu_run.sh` SQ_MATRIX run (the device tool's $OUT, fetched) into the
stored reference and the README's result table.

Owns: checking the fetched bundle (loads, jobs/outputs/checkpoints counted, Quark errors grouped by
message), optionally installing it under reference/ (`--install`), optionally replaying it here
with a CPU build (`--sq BIN`: ref_bundle.py run, whose inputs are regenerated with that binary and
checked byte for byte), and printing one markdown table per replay log found (replay_cpu.txt,
replay_cuda.txt from the GPU host, and the local replay): passed / documented / failed per
checkpoint set (sq_matrix.py: plain, fp8, ct). Must not depend on Quark or torch.

Usage:
  gpu_result.py OUT_DIR [--install] [--sq SQ_BIN --work DIR]
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sq_matrix  # noqa: E402

BUNDLE = "quark-0.13-cuda-sq.json.gz"


def set_of(label: str) -> str:
    ck = label.removesuffix("-keep")
    for name in ("plain", "fp8", "ct"):
        if ck in sq_matrix.SETS[name]:
            return name + ("-keep" if label.endswith("-keep") else "")
    return "other"


def table(log: str) -> list[str]:
    """Rows of a ref_bundle.py run log -> markdown rows per checkpoint set."""
    counts = collections.defaultdict(collections.Counter)
    tail = ""
    for line in open(log):
        tok = line.split()
        if re.match(r"^\d+ passed, \d+ documented, \d+ failed", line):
            tail = line.strip()
            continue
        if len(tok) < 3 or tok[0] not in sq_matrix.ALL_SCHEMES:
            continue
        s = set_of(tok[1])
        rest = " ".join(tok[2:])
        if "documented" in rest:
            counts[s]["documented"] += 1
        elif "both refused" in rest:
            counts[s]["both refused"] += 1
        elif re.match(r"^(\d+)/(\1)\s+ok\s+ok\s*$", rest):
            counts[s]["identical"] += 1
        else:
            counts[s]["FAILED"] += 1
    rows = ["| set | runs | identical | both refused | documented | failed |", "|---|---|---|---|---|---|"]
    for s in sorted(counts):
        c = counts[s]
        rows.append(f"| {s} | {sum(c.values())} | {c['identical']} | {c['both refused']} | "
                    f"{c['documented']} | {c['FAILED']} |")
    rows.append(f"\n`{tail or 'no summary line (the run was cut by its time limit)'}`")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--install", action="store_true", help=f"copy the bundle and its jobs into reference/")
    p.add_argument("--sq", default=None, help="replay the bundle here with this shardquant binary")
    p.add_argument("--work", default="/tmp/gpu_result_replay")
    a = p.parse_args(argv)
    bpath = os.path.join(a.out_dir, BUNDLE)
    with gzip.open(bpath, "rt") as f:
        b = json.load(f)
    outs = sum(len(v) for v in b["outputs"].values())
    errs = collections.Counter()
    for label, per in b["outputs"].items():
        for scheme, m in per.items():
            if "error" in m:
                first = m["error"].splitlines()[0]
                first = re.sub(r"\d+", "N", re.sub(r"/\S+", "PATH", first.split("Registered values")[0]))[:110]
                errs[(set_of(label), first)] += 1
    print(f"bundle {bpath}: {len(b['jobs'])} jobs, {outs} outputs, {len(b['checkpoints'])} checkpoints, "
          f"{len(b.get('documented', {}))} documented labels\n  about: {b.get('about', '')}")
    print("\nQuark refusals (set, first line, count):")
    for (s, msg), n in sorted(errs.items()):
        print(f"  {s:10s} {n:4d}  {msg}")
    for name in ("sq_make.txt", "quark_cuda_sq_jobs.txt"):
        path = os.path.join(a.out_dir, name)
        if os.path.isfile(path):
            lines = open(path).read().splitlines()
            print(f"\n{name}: {len(lines)} lines; last: {lines[-1] if lines else ''}")
    if a.install:
        ref = os.path.join(HERE, "reference")
        shutil.copyfile(bpath, os.path.join(ref, BUNDLE))
        shutil.copyfile(os.path.join(a.out_dir, "sq_jobs.txt"), os.path.join(ref, "quark-0.13-cuda-sq-jobs.txt"))
        print(f"\ninstalled {BUNDLE} and quark-0.13-cuda-sq-jobs.txt into {ref}")
    logs = [(n, os.path.join(a.out_dir, n)) for n in ("replay_cpu.txt", "replay_cuda.txt")]
    if a.sq:
        local = os.path.join(a.work, "replay_here.txt")
        os.makedirs(a.work, exist_ok=True)
        with open(local, "w") as g:
            subprocess.run([sys.executable, os.path.join(HERE, "ref_bundle.py"), "run", bpath, "--sq", a.sq,
                            "--work", a.work], stdout=g, stderr=subprocess.STDOUT)
        logs.append(("replay here (" + a.sq + ", cpu)", local))
    for name, path in logs:
        if os.path.isfile(path):
            print(f"\n### {name}\n")
            print("\n".join(table(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
