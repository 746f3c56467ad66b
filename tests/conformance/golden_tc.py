#!/usr/bin/env python3
"""Tensor-level conformance: formats.md's golden vectors (§12.7), the [TO CONFIRM] items (§12.9,
Appendix B) and random tensors, run through Quark's own file-to-file quantizer on a device.

Owns: building tiny one-shard checkpoints (model_type llama, exclude list empty) that hold the
golden tensors of a scheme plus random BF16/F16/F32 tensors, running Quark F2F on them
(quark_ref.run_quark: LLMTemplate.get("llama").get_config(scheme, exclude_layers=[]) and
ModelQuantizer.direct_quantize_checkpoint, i.e. exactly the functions and configuration of the real
flow), and checking Quark's bytes against (a) the expected bytes written in formats.md and (b) the
numpy rendering of formats.md's rules (spec_ref.py) for the random tensors.
Must not depend on shardquant.

Usage: golden_tc.py [--device cpu|cuda] [--schemes a,b,...] [--dtypes bf16,f16,f32] [--rows R]
                    [--cols C] [--seed N] [--json OUT.json] [--keep DIR]
Prints: per golden PASS/FAIL (with the differing elements), per TC item the verdict and Quark's exact
values, and a table of random-tensor agreement (elements differing / total per output tensor kind).
Exit status: 0 when every golden matches, 1 otherwise (random-tensor differences are reported, not fatal).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import compare  # noqa: E402
import goldens  # noqa: E402
import quark_ref  # noqa: E402
import spec_ref  # noqa: E402

DT_ST = {"bf16": "BF16", "f16": "F16", "f32": "F32"}
DT_TORCH_NAME = {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}


# ---------------------------------------------------------------- checkpoint writing (no torch)
def write_safetensors(path: str, tensors: dict) -> None:
    """tensors: {name: (dtype, shape, bytes)}."""
    header, off, blobs = {}, 0, []
    for name in sorted(tensors):
        dt, shape, b = tensors[name]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_checkpoint(d: str, tensors: dict, dtype: str) -> None:
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "model.safetensors"), tensors)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                   "torch_dtype": DT_TORCH_NAME[dtype]}, f)


def to_raw(x32: np.ndarray, dtype: str) -> bytes:
    """fp32 values (exact in dtype) -> little-endian bytes of dtype."""
    if dtype == "bf16":
        return spec_ref.f32_to_bf16_bits(x32).astype("<u2").tobytes()
    if dtype == "f16":
        return x32.astype("<f2").tobytes()
    return x32.astype("<f4").tobytes()


# ---------------------------------------------------------------- random tensors
def random_layers(rng: np.random.Generator, dtype: str, rows: int, cols: int) -> dict:
    """name -> fp32 array of exact `dtype` values. Families chosen to hit rounding corners."""
    wide = dtype != "f16"
    out = {}
    out["normal"] = rng.standard_normal((rows, cols)) * 0.02
    e = rng.uniform(-40, 40, (rows, 1)) if wide else rng.uniform(-8, 6, (rows, 1))
    out["rowscale"] = rng.standard_normal((rows, cols)) * np.exp2(e)
    out["ties"] = rng.integers(-64, 65, (rows, cols)) / 8.0
    x = rng.standard_normal((rows, cols)) * 0.01
    k = rng.integers(0, cols, (rows, 3))
    for r in range(rows):
        x[r, k[r]] *= rng.uniform(50, 400)
    out["outlier"] = x
    # tiny values: bf16/f32 near and below the fp32 normal range (MX k = -127 blocks, subnormals);
    # f16 near its own small range; plus an all-zero row and a row with one -0.
    t = rng.standard_normal((rows, cols)) * (np.exp2(rng.uniform(-133, -120, (rows, 1))) if wide
                                              else np.exp2(rng.uniform(-12, -8, (rows, 1))))
    t[0, :] = 0.0
    t[1, :] = 0.0
    t[1, 5] = -0.0
    out["tiny"] = t
    if wide:  # magnitudes that keep fp8 scales representable in bf16 (>= 2^-133 after / 448)
        out["small"] = rng.standard_normal((rows, cols)) * np.exp2(rng.uniform(-122, -110, (rows, 1)))
    res = {}
    for name, v in out.items():
        v32 = v.astype(np.float32)
        if dtype == "bf16":
            v32 = spec_ref.round_d(v32, "bf16")
        elif dtype == "f16":
            v32 = v32.astype(np.float16).astype(np.float32)
        res[name] = np.ascontiguousarray(v32)
    return res


# ---------------------------------------------------------------- main work
def display(dtype: str, b: bytes) -> str:
    if dtype in ("F32", "I32"):
        return " ".join(f"{w:08X}" for w in struct.unpack(f"<{len(b) // 4}I", b))
    return b.hex(" ").upper()


def elem_slice(dtype: str, b: bytes, lo: int, hi: int) -> bytes:
    w = 4 if dtype in ("F32", "I32") else 1
    return b[lo * w:hi * w]


def run_sq(sq_bin: str, src: str, dst: str, scheme: str, device: str) -> tuple[bool, str]:
    """shardquant quantize with an empty exclude list (as the Quark runs here); (ok, message)."""
    import subprocess

    shutil.rmtree(dst, ignore_errors=True)
    p = subprocess.run([sq_bin, "quantize", "--model-dir", src, "--output-dir", dst, "--scheme", scheme,
                        "--device", device, "--quiet", "--exclude"], capture_output=True, text=True)
    return p.returncode == 0, (p.stderr.strip().splitlines() or [""])[-1]


def run(device: str, schemes: list[str], dtypes: list[str], rows: int, cols: int, seed: int, keep: str | None,
        sq_bin: str | None = None):
    rng = np.random.default_rng(seed)
    who = "shardquant" if sq_bin else "Quark"
    work = keep or tempfile.mkdtemp(prefix="sq_golden_tc_")
    golden_results = []  # (golden, scheme, ok, lines, quark tensors)
    random_results = []  # dict rows
    quark_out = {}  # (golden name, scheme) -> {suffix: (dtype, shape, bytes)}
    for scheme in schemes:
        for dtype in dtypes:
            tensors, layer_src = {}, {}
            idx = 0
            if dtype == "bf16":
                for g in goldens.GOLDENS:
                    if scheme in g["schemes"]:
                        w = np.array(g["rows"], dtype=np.uint16)
                        name = f"model.layers.{idx}.mlp.down_proj.weight"
                        tensors[name] = ("BF16", list(w.shape), w.astype("<u2").tobytes())
                        layer_src[name] = ("golden", g)
                        idx += 1
            for fam, x in random_layers(rng, dtype, rows, cols).items():
                name = f"model.layers.{idx}.mlp.down_proj.weight"
                idx += 1
                if sq_bin:
                    # formats.md makes some inputs an error ([DIFF 15]); shardquant must refuse them,
                    # which would stop the whole checkpoint: check those alone.
                    try:
                        spec_ref.quantize(scheme, x, dtype)
                    except spec_ref.SpecError as e:
                        one = os.path.join(work, f"{scheme}-{dtype}-{fam}-src")
                        shutil.rmtree(one, ignore_errors=True)
                        write_checkpoint(one, {name: (DT_ST[dtype], [rows, cols], to_raw(x, dtype))}, dtype)
                        ok, msg = run_sq(sq_bin, one, one + "-out", scheme, device)
                        random_results.append({"scheme": scheme, "dtype": dtype, "family": fam,
                                               "spec_error": f"{e}; shardquant "
                                               + (f"refused: {msg[:120]}" if not ok else "did NOT refuse")})
                        continue
                tensors[name] = (DT_ST[dtype], [rows, cols], to_raw(x, dtype))
                layer_src[name] = ("random", fam, x)
            src = os.path.join(work, f"{scheme}-{dtype}-src")
            dst = os.path.join(work, f"{scheme}-{dtype}-{who}-{device.replace(':', '')}")
            shutil.rmtree(src, ignore_errors=True)
            write_checkpoint(src, tensors, dtype)
            try:
                if sq_bin:
                    ok, msg = run_sq(sq_bin, src, dst, scheme, device)
                    if not ok:
                        raise RuntimeError(msg)
                else:
                    quark_ref.run_quark(src, dst, scheme, device=device, exclude=[], replace=True)
            except BaseException as e:  # noqa: BLE001 - report and go on with the next scheme
                print(f"ERROR {scheme} {dtype}: {who} failed: {type(e).__name__}: {e}")
                random_results.append({"scheme": scheme, "dtype": dtype, "error": f"{type(e).__name__}: {e}"})
                continue
            out, _ = compare.read_safetensors(os.path.join(dst, "model.safetensors"))
            for name, srcinfo in layer_src.items():
                q = {suf: out.get(name + suf) for suf in ("", "_scale", "_scale_2")}
                q = {k: v for k, v in q.items() if v is not None}
                if srcinfo[0] == "golden":
                    g = srcinfo[1]
                    quark_out[(g["name"], scheme)] = q
                    lines = []
                    for suf, (edt, esh, eb) in g["expect"].items():
                        if suf not in q:
                            lines.append(f"    {suf or '.weight'}: missing in Quark's output")
                            continue
                        qdt, qsh, qb = q[suf]
                        if (qdt, qsh) != (edt, esh):
                            lines.append(f"    {name}{suf}: {who} {qdt}{qsh} vs formats.md {edt}{esh}")
                        if qb != eb:
                            i, cnt = compare.first_diff(edt, eb, qb)
                            lines.append(f"    .weight{suf}: {cnt} elements differ, first flat {i}: formats.md "
                                         f"{compare.element(edt, eb, i)} {who} {compare.element(qdt, qb, i)}")
                            lines.append(f"      formats.md: {display(edt, eb)}")
                            lines.append(f"      {who + ':':11s} {display(qdt, qb)}")
                    golden_results.append((g["name"], scheme, not lines, lines))
                else:
                    fam, x = srcinfo[1], srcinfo[2]
                    row = {"scheme": scheme, "dtype": dtype, "family": fam}
                    try:
                        exp = spec_ref.quantize(scheme, x, dtype)
                    except spec_ref.SpecError as e:
                        nan = sum(1 for c in q[""][2] if c in (0x7F, 0xFF)) if q[""][0] == "F8_E4M3" else 0
                        row["spec_error"] = f"{e}; Quark wrote {nan} NaN codes"
                        random_results.append(row)
                        continue
                    for suf in ("", "_scale", "_scale_2"):
                        if suf not in exp and suf not in q:
                            continue
                        key = suf or "weight"
                        if suf not in q or suf not in exp:
                            row[key] = "missing"
                            continue
                        edt, esh, eb = exp[suf]
                        qdt, qsh, qb = q[suf]
                        if (qdt, qsh) != (edt, esh):
                            row[key] = f"dtype/shape {who} {qdt}{qsh} spec {edt}{esh}"
                            continue
                        i, cnt = compare.first_diff(edt, eb, qb)
                        n = compare._numel(esh) if esh else 1
                        row[key] = [cnt, n]
                        if cnt:
                            row[key + "_first"] = (f"flat {i}: spec {compare.element(edt, eb, i)} "
                                                   f"{who} {compare.element(qdt, qb, i)}")
                    random_results.append(row)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return golden_results, random_results, quark_out


def tc_verdicts(quark_out: dict) -> list[dict]:
    res = []
    for item, gname, suf, (lo, hi), expected, alts, statement in goldens.TC_CHECKS:
        g = next(g for g in goldens.GOLDENS if g["name"] == gname)
        q = quark_out.get((gname, g["schemes"][0]))
        if q is None or suf not in q:
            res.append(dict(item=item, golden=gname, verdict="NOT RUN", quark=None, expected=expected,
                            statement=statement))
            continue
        qdt, _, qb = q[suf]
        got = display(qdt, elem_slice(qdt, qb, lo, hi))
        if got == expected:
            verdict = "AGREES"
        else:
            match = [k for k, v in alts.items() if v == got]
            verdict = "DISAGREES" + (f" (= alternative: {match[0]})" if match else " (no listed alternative)")
        res.append(dict(item=item, golden=gname, tensor=".weight" + suf, elements=[lo, hi], verdict=verdict,
                        quark=got, expected=expected, statement=statement))
    # TC5: all goldens of every scheme
    return res


def report(a, gres, rres, qout, who: str, env: dict) -> int:
    print(f"\n== Golden vectors (formats.md §12.7), {who} on", a.device)
    n_ok = 0
    for gname, scheme, ok, lines in gres:
        n_ok += ok
        print(f"  {gname:4s} {scheme:22s} {'PASS' if ok else 'FAIL'}")
        for line in lines:
            print(line)
    print(f"  goldens passing: {n_ok}/{len(gres)}")
    tcs = tc_verdicts(qout)
    print(f"\n== [TO CONFIRM] items (formats.md §12.9), {who} on", a.device)
    for t in tcs:
        print(f"  {t['item']} {t['golden']:4s} {t.get('tensor', ''):16s} {t['verdict']:45s} "
              f"{who} [{t['quark']}] formats.md [{t['expected']}]")
    print(f"\n== Random tensors: {who} vs formats.md rules (spec_ref.py); differing/total elements")
    bad = 0
    for r in rres:
        if "error" in r:
            bad += 1
            print(f"  {r['scheme']:22s} {r['dtype']:5s} ERROR {r['error'][:160]}")
        elif "spec_error" in r:
            bad += "did NOT refuse" in r["spec_error"]
            print(f"  {r['scheme']:22s} {r['dtype']:5s} {r['family']:9s} formats.md: error; {r['spec_error']}")
        else:
            diffs = {k: r[k] for k in ("weight", "_scale", "_scale_2") if k in r and r[k] != "-"
                     and not (isinstance(r[k], list) and r[k][0] == 0)}
            if diffs:
                bad += 1
                print(f"  {r['scheme']:22s} {r['dtype']:5s} {r['family']:9s} DIFFERENT {diffs}")
                for k in diffs:
                    if r.get(k + "_first"):
                        print(f"      {k}: {r[k + '_first']}")
    n_rand = sum(1 for r in rres if "family" in r and "spec_error" not in r)
    print(f"  random tensors identical: {n_rand - bad if bad <= n_rand else 0}/{n_rand} "
          f"(+{sum(1 for r in rres if 'spec_error' in r)} inputs formats.md rejects)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"env": env, "goldens": [dict(golden=g, scheme=s, ok=ok, lines=l) for g, s, ok, l in gres],
                       "tc": tcs, "random": rres}, f, indent=1)
    ok = gres and n_ok == len(gres) and bad == 0
    print(f"\n{n_ok + n_rand - bad} passed, {len(gres) - n_ok + bad} failed")
    return 0 if ok else 1


def main_sq(a) -> int:
    env = {"candidate": a.sq, "device": a.device}
    print(f"golden_tc: {env}")
    schemes = [s for s in a.schemes.split(",") if s]
    dtypes = [d for d in a.dtypes.split(",") if d]
    gres, rres, qout = run(a.device, schemes, dtypes, a.rows, a.cols, a.seed, a.keep, sq_bin=a.sq)
    return report(a, gres, rres, qout, "shardquant", env)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--schemes", default=",".join(spec_ref.SCHEMES))
    p.add_argument("--dtypes", default="bf16,f16,f32")
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--cols", type=int, default=256)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--json", default=None)
    p.add_argument("--keep", default=None, help="keep checkpoints and Quark outputs in this directory")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--sq", default=None, metavar="SQ_BIN",
                   help="check shardquant instead of Quark (no Quark needed): goldens and random tensors "
                        "against formats.md's rules, which Quark on CUDA matches (reference/ logs)")
    a = p.parse_args(argv)
    if a.sq:
        return main_sq(a)
    if not a.verbose:
        quark_ref.quiet_quark()
    import importlib.metadata as md

    import quark_env
    import torch

    stubbed = quark_env.prepare()

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("golden_tc: CUDA requested but not available", file=sys.stderr)
        return 2
    env = {"device": a.device, "torch": torch.__version__, "amd-quark": md.version("amd-quark"),
           "gpu": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else None,
           "stubbed_optional_packages": stubbed}
    print(f"golden_tc: {env}")
    schemes = [s for s in a.schemes.split(",") if s]
    dtypes = [d for d in a.dtypes.split(",") if d]
    gres, rres, qout = run(a.device, schemes, dtypes, a.rows, a.cols, a.seed, a.keep)

    print("\n== Golden vectors (formats.md §12.7), Quark on", a.device)
    n_ok = 0
    for gname, scheme, ok, lines in gres:
        n_ok += ok
        print(f"  {gname:4s} {scheme:22s} {'PASS' if ok else 'FAIL'}")
        for line in lines:
            print(line)
    print(f"  goldens passing: {n_ok}/{len(gres)}")

    tcs = tc_verdicts(qout)
    print("\n== [TO CONFIRM] items (formats.md §12.9), Quark on", a.device)
    for t in tcs:
        print(f"  {t['item']} {t['golden']:4s} {t.get('tensor', ''):16s} {t['verdict']:45s} "
              f"Quark [{t['quark']}] formats.md [{t['expected']}]")
    tc5 = "AGREES" if gres and n_ok == len(gres) else "DISAGREES"
    print(f"  TC5 all goldens: {tc5} ({n_ok}/{len(gres)})")

    print("\n== Random tensors: Quark vs formats.md rules (spec_ref.py); differing/total elements")
    print(f"  {'scheme':22s} {'dtype':5s} {'family':9s} {'weight':>14s} {'scale':>12s} {'scale_2':>10s}")
    totals = {}
    for r in rres:
        if "error" in r:
            print(f"  {r['scheme']:22s} {r['dtype']:5s} ERROR {r['error'][:100]}")
            continue
        if "spec_error" in r:
            print(f"  {r['scheme']:22s} {r['dtype']:5s} {r['family']:9s} formats.md: error; {r['spec_error']}")
            continue

        def fmt(v):
            return "-" if v is None else (f"{v[0]}/{v[1]}" if isinstance(v, list) else str(v))

        print(f"  {r['scheme']:22s} {r['dtype']:5s} {r['family']:9s} {fmt(r.get('weight')):>14s} "
              f"{fmt(r.get('_scale')):>12s} {fmt(r.get('_scale_2')):>10s}")
        for k in ("weight", "_scale", "_scale_2"):
            if r.get(k + "_first"):
                print(f"      {k}: {r[k + '_first']}")
        key = (r["scheme"], r["dtype"])
        agree = all(isinstance(r.get(k), list) and r[k][0] == 0 for k in ("weight", "_scale", "_scale_2")
                    if k in r)
        totals[key] = totals.get(key, True) and agree
    print("\n  per scheme/dtype (all random tensors byte-identical to formats.md rules?):")
    for (s, d), ok in totals.items():
        print(f"    {s:22s} {d:5s} {'identical' if ok else 'DIFFERENT'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"env": env, "goldens": [dict(golden=g, scheme=s, ok=ok, lines=l) for g, s, ok, l in gres],
                       "tc": tcs, "tc5": tc5, "random": rres}, f, indent=1)
    return 0 if gres and n_ok == len(gres) else 1


if __name__ == "__main__":
    sys.exit(main())
