#!/usr/bin/env python3
"""Reference bundles: Quark's outputs made once on the GPU machine, kept as manifests, replayed
against shardquant anywhere.

A bundle (JSON, gzip) holds
  make:        {checkpoint: [make_ckpt.py arguments]}       how to regenerate each input
  checkpoints: {checkpoint: manifest}                        the inputs' bytes (per-tensor SHA-256)
  jobs:        [{label, checkpoint, scheme, options}]        the Quark runs (quark_ref job options)
  outputs:     {label: {scheme: manifest}}                   Quark's outputs (compare.py manifests)
Owns: building bundles from a gpu_run.sh result and replaying them (`run`): regenerate the
checkpoints with make_ckpt.py, check them byte for byte, run `shardquant quantize` with the same
options, compare each output with compare.py, print one table and "N passed, N failed".
Must not depend on Quark (replay needs only numpy and the shardquant binary).

Usage:
  ref_bundle.py build OUT.json.gz --jobs JOBS.txt --manifests DIR --ckpt-root ROOT[,ROOT2] --about TEXT
  ref_bundle.py run BUNDLE.json.gz --sq SQ_BIN --work DIR [--sq-device cpu|cuda] [--schemes a,b]
                 [--labels l1,l2] [--python PY]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402


def _make_args_from_name(name: str) -> list[str]:
    """Checkpoint directory names made by gpu_run/README: ARCH-DTYPE[-fp8src][-odd]."""
    archs = ["deepseek_v3", "qwen3_5_moe", "qwen3_moe", "llama"]
    arch = next(a for a in archs if name.startswith(a + "-"))
    rest = name[len(arch) + 1:].split("-")
    args = ["--arch", arch, "--dtype", rest[0]]
    if "fp8src" in rest:
        args.append("--fp8-source")
    if "odd" in rest:
        args.append("--odd-shapes")
    return args


def build(a) -> int:
    jobs, outputs, ckpts = [], {}, {}
    roots = a.ckpt_root.split(",")
    with open(a.jobs) as f:
        for line in f:
            tok = line.split()
            if not tok or tok[0].startswith("#"):
                continue
            model, scheme, out = tok[:3]
            ck = os.path.basename(model.rstrip("/"))
            label = os.path.basename(os.path.dirname(out.rstrip("/")))
            jobs.append({"label": label, "checkpoint": ck, "scheme": scheme, "options": tok[3:]})
            mpath = os.path.join(a.manifests, label, scheme + ".manifest.json")
            if os.path.isfile(mpath):
                outputs.setdefault(label, {})[scheme] = json.load(open(mpath))
            if ck not in ckpts:
                d = next((os.path.join(r, ck) for r in roots if os.path.isdir(os.path.join(r, ck))), None)
                if d is None:
                    raise SystemExit(f"ref_bundle: checkpoint {ck} not found under {roots}")
                ckpts[ck] = compare.make_manifest(d)
    bundle = {"about": a.about, "make": {c: _make_args_from_name(c) for c in ckpts}, "checkpoints": ckpts,
              "jobs": jobs, "outputs": outputs}
    with gzip.open(a.out, "wt") as f:
        json.dump(bundle, f, separators=(",", ":"))
    print(f"ref_bundle: {len(jobs)} jobs, {sum(len(v) for v in outputs.values())} outputs, "
          f"{len(ckpts)} checkpoints -> {a.out}")
    return 0


def sq_options(opts: list[str]) -> list[str]:
    """quark_ref job options -> shardquant quantize options."""
    out, excl, rest = [], None, list(opts)
    while rest:
        o = rest.pop(0)
        if o == "--keep-original":
            out.append("--keep-excluded-as-original")
        elif o == "--no-converters":
            out.append("--no-template-converters")
        elif o == "--no-exclude":
            excl = []
        elif o == "--exclude":
            excl = (excl or []) + [rest.pop(0)]
        elif o == "--layer-config":
            g, _, s = rest.pop(0).rpartition("=")
            out += ["--layer-scheme", g, s]
        else:
            raise SystemExit(f"ref_bundle: unknown job option {o}")
    if excl is not None:
        out += ["--exclude"] + excl
    return out


def run(a) -> int:
    with gzip.open(a.bundle, "rt") as f:
        b = json.load(f)
    os.makedirs(a.work, exist_ok=True)
    ckroot = os.path.join(a.work, "ckpt")
    os.makedirs(ckroot, exist_ok=True)
    schemes = set(a.schemes.split(",")) if a.schemes else None
    labels = set(a.labels.split(",")) if a.labels else None
    jobs = [j for j in b["jobs"] if (schemes is None or j["scheme"] in schemes)
            and (labels is None or j["label"] in labels)]
    for ck in sorted({j["checkpoint"] for j in jobs}):
        d = os.path.join(ckroot, ck)
        if not os.path.isfile(os.path.join(d, "config.json")):
            subprocess.run([a.python, os.path.join(HERE, "make_ckpt.py"), *b["make"][ck], "--out", d], check=True,
                           stdout=subprocess.DEVNULL)
        if compare.make_manifest(d)["tensors"] != b["checkpoints"][ck]["tensors"]:
            print(f"ref_bundle: regenerated checkpoint {ck} differs from the bundle's input; stop", file=sys.stderr)
            return 2
    print(f"ref_bundle: {len({j['checkpoint'] for j in jobs})} checkpoints byte-identical to the bundle's inputs")
    n_ok = 0
    print(f"\n{'scheme':22s} {'label':32s} {'tensors':>9s} {'config':7s} {'files':6s} note")
    for j in jobs:
        ref = b["outputs"].get(j["label"], {}).get(j["scheme"])
        out = os.path.join(a.work, f"sq-{a.sq_device}", j["label"], j["scheme"])
        if not os.path.exists(out):
            os.makedirs(os.path.dirname(out), exist_ok=True)
            cmd = [a.sq, "quantize", "--model-dir", os.path.join(ckroot, j["checkpoint"]), "--output-dir", out,
                   "--scheme", j["scheme"], "--device", a.sq_device, "--quiet", *sq_options(j["options"])]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                os.makedirs(out, exist_ok=True)
                with open(os.path.join(out, "SQ_ERROR.txt"), "w") as g:
                    g.write(f"exit {p.returncode}\n{' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
        q_err = ref is None or "error" in ref
        s_err = os.path.isfile(os.path.join(out, "SQ_ERROR.txt"))
        if q_err or s_err:
            ok = q_err and s_err
            note = "both refused" if ok else ("ONLY Quark refused" if q_err else "ONLY shardquant refused: "
                                              + open(os.path.join(out, "SQ_ERROR.txt")).read().splitlines()[-1][:80])
            print(f"{j['scheme']:22s} {j['label']:32s} {'-':>9s} {'-':7s} {'-':6s} {note}")
            n_ok += ok
            continue
        r = compare.compare_manifest(ref, out, f"{j['label']}/{j['scheme']}")
        with open(out + ".compare.txt", "w") as g:
            g.write("\n".join(r["lines"]) + "\n" + compare.summary_line(r) + "\n")
        n_ok += r["ok"]
        print(f"{j['scheme']:22s} {j['label']:32s} {r['tensors_identical']:>4d}/{r['tensors_total']:<4d} "
              f"{'ok' if r['config_ok'] else 'DIFF':7s} {'ok' if r['files_ok'] else 'DIFF':6s} "
              f"{'' if r['ok'] else 'see ' + out + '.compare.txt'}")
    print(f"\n{n_ok} passed, {len(jobs) - n_ok} failed")
    return 0 if n_ok == len(jobs) else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pb = sub.add_parser("build")
    pb.add_argument("out")
    pb.add_argument("--jobs", required=True)
    pb.add_argument("--manifests", required=True)
    pb.add_argument("--ckpt-root", required=True)
    pb.add_argument("--about", default="")
    pr = sub.add_parser("run")
    pr.add_argument("bundle")
    pr.add_argument("--sq", required=True)
    pr.add_argument("--work", required=True)
    pr.add_argument("--sq-device", default="cpu")
    pr.add_argument("--schemes", default=None)
    pr.add_argument("--labels", default=None)
    pr.add_argument("--python", default=sys.executable)
    a = p.parse_args(argv)
    return build(a) if a.cmd == "build" else run(a)


if __name__ == "__main__":
    sys.exit(main())
