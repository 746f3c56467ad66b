#!/usr/bin/env python3
"""Reference bundles: Quark's outputs made once on the GPU machine, kept as manifests, replayed
against shardquant anywhere.

A bundle (JSON, gzip) holds
  make:        {checkpoint: [make_ckpt.py arguments]            how to regenerate each input
                 | {"tool": "make-checkpoint", "args": [...]}}  (`shardquant make-checkpoint ARGS --out D`)
  checkpoints: {checkpoint: manifest}                        the inputs' bytes (per-tensor SHA-256)
  jobs:        [{label, checkpoint, scheme, options}]        the Quark runs (quark_ref job options)
  outputs:     {label: {scheme: manifest}}                   Quark's outputs (compare.py manifests)
  documented:  {label: reason}                               (optional) checkpoints where Quark is known
                                                             to differ from formats.md (a [DIFF] item)
Owns: building bundles from a gpu_run.sh result and replaying them (`run`): regenerate the
checkpoints (make_ckpt.py, or the shardquant binary under test for make-checkpoint inputs), check
them byte for byte, run `shardquant quantize` with the same options, compare each output with
compare.py, print one table and "N passed, N documented, N failed". A job of a documented label
that differs (or that only Quark refused) counts as documented, not failed; identical still passes.
Must not depend on Quark (replay needs only numpy and the shardquant binary).

Usage:
  ref_bundle.py build OUT.json.gz --jobs JOBS.txt (--manifests DIR | --outputs DIR) --ckpt-root ROOT[,ROOT2]
                 [--gen python|sq] [--about TEXT]
      --outputs DIR: Quark output dirs DIR/<label>/<scheme> (manifests computed here, one process);
      --gen sq: the checkpoints were made by make-checkpoint with sq_matrix.py names
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
import sq_matrix  # noqa: E402


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
    skipped = 0
    roots = a.ckpt_root.split(",")
    with open(a.jobs) as f:
        for line in f:
            tok = line.split()
            if not tok or tok[0].startswith("#"):
                continue
            model, scheme, out = tok[:3]
            ck = os.path.basename(model.rstrip("/"))
            label = os.path.basename(os.path.dirname(out.rstrip("/")))
            if a.outputs and not os.path.isdir(os.path.join(a.outputs, label, scheme)):
                skipped += 1  # Quark never got to it (e.g. the run's time limit): not a reference
                continue
            jobs.append({"label": label, "checkpoint": ck, "scheme": scheme, "options": tok[3:]})
            if a.outputs:
                odir = os.path.join(a.outputs, label, scheme)
                if os.path.isdir(odir):
                    outputs.setdefault(label, {})[scheme] = compare.make_manifest(odir)
            else:
                mpath = os.path.join(a.manifests, label, scheme + ".manifest.json")
                if os.path.isfile(mpath):
                    outputs.setdefault(label, {})[scheme] = json.load(open(mpath))
            if ck not in ckpts:
                d = next((os.path.join(r, ck) for r in roots if os.path.isdir(os.path.join(r, ck))), None)
                if d is None:
                    raise SystemExit(f"ref_bundle: checkpoint {ck} not found under {roots}")
                ckpts[ck] = compare.make_manifest(d)
    if a.gen == "sq":
        make = {c: {"tool": "make-checkpoint", "args": sq_matrix.args_of(c)} for c in ckpts}
    else:
        make = {c: _make_args_from_name(c) for c in ckpts}
    documented = {j["label"]: r for j in jobs for c, r in sq_matrix.DOCUMENTED.items()
                  if j["checkpoint"] == c} if a.gen == "sq" else {}
    bundle = {"about": a.about, "make": make, "checkpoints": ckpts, "jobs": jobs, "outputs": outputs}
    if documented:
        bundle["documented"] = documented
    with gzip.open(a.out, "wt") as f:
        json.dump(bundle, f, separators=(",", ":"))
    print(f"ref_bundle: {len(jobs)} jobs, {sum(len(v) for v in outputs.values())} outputs, "
          f"{len(ckpts)} checkpoints -> {a.out}" + (f" ({skipped} jobs without output left out)" if skipped else ""))
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
            mk = b["make"][ck]
            if isinstance(mk, dict):  # shardquant make-checkpoint (the binary under test)
                cmd = [a.sq, "make-checkpoint", *mk["args"], "--out", d]
            else:
                cmd = [a.python, os.path.join(HERE, "make_ckpt.py"), *mk, "--out", d]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        have, want = compare.make_manifest(d), b["checkpoints"][ck]
        keys = ("tensors", "config", "weight_map", "side_files") if isinstance(b["make"][ck], dict) else ("tensors",)
        if any(have.get(k) != want.get(k) for k in keys):
            print(f"ref_bundle: regenerated checkpoint {ck} differs from the bundle's input; stop", file=sys.stderr)
            return 2
    print(f"ref_bundle: {len({j['checkpoint'] for j in jobs})} checkpoints byte-identical to the bundle's inputs")
    n_ok = n_doc = 0
    documented = b.get("documented", {})
    print(f"\n{'scheme':22s} {'label':40s} {'tensors':>9s} {'config':7s} {'files':6s} note")
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
        doc = documented.get(j["label"])
        if q_err or s_err:
            ok = q_err and s_err
            is_doc = not ok and q_err and doc is not None
            note = "both refused" if ok else ("ONLY Quark refused" if q_err else "ONLY shardquant refused: "
                                              + open(os.path.join(out, "SQ_ERROR.txt")).read().splitlines()[-1][:80])
            if is_doc:
                note = "documented: " + note + " (" + doc + ")"
            print(f"{j['scheme']:22s} {j['label']:40s} {'-':>9s} {'-':7s} {'-':6s} {note}")
            n_ok += ok
            n_doc += is_doc
            continue
        r = compare.compare_manifest(ref, out, f"{j['label']}/{j['scheme']}")
        with open(out + ".compare.txt", "w") as g:
            g.write("\n".join(r["lines"]) + "\n" + compare.summary_line(r) + "\n")
        n_ok += r["ok"]
        is_doc = not r["ok"] and doc is not None
        n_doc += is_doc
        note = "" if r["ok"] else ("documented (" + doc + "): " if is_doc else "see ") + out + ".compare.txt"
        print(f"{j['scheme']:22s} {j['label']:40s} {r['tensors_identical']:>4d}/{r['tensors_total']:<4d} "
              f"{'ok' if r['config_ok'] else 'DIFF':7s} {'ok' if r['files_ok'] else 'DIFF':6s} {note}")
    print(f"\n{n_ok} passed, {n_doc} documented, {len(jobs) - n_ok - n_doc} failed")
    return 0 if n_ok + n_doc == len(jobs) else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pb = sub.add_parser("build")
    pb.add_argument("out")
    pb.add_argument("--jobs", required=True)
    pb.add_argument("--manifests", default=None)
    pb.add_argument("--outputs", default=None)
    pb.add_argument("--gen", default="python", choices=["python", "sq"])
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
