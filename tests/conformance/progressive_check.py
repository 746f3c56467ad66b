#!/usr/bin/env python3
"""Where Quark-on-CPU and shardquant differ on a progressive (two-stage) spec, check that every
difference is explained by the TC4 scale rule alone (tests/conformance/README.md: on the CPU Quark
divides per-channel / per-group scales truly, CUDA and shardquant multiply by the reciprocal).

Owns: decoding the packed second-stage codes of both outputs (int4/uint4 words in Quark's reorder
nibble order [0,2,4,6,1,3,5,7], per-group words transposed; fp8/int8 bytes as they are) and, per
quantized weight, the verdict:
  - per-tensor first-stage scales (`_scale` of shape []) are identical;
  - every differing scale (`_scale`, `_scale_2`) differs by at most 1 ulp;
  - every differing code lies in a unit (row for per-row scales, (row, group) for per-group
    scales) whose first- or second-stage scale differs.
If all hold, the layout (transposition, nibble order, which scale is `_scale` / `_scale_2`) and the
element math agree and only the scale division rule separates the two runs; the CUDA run decides
the rest (gpu jobs, README "Custom progressive specs").
Must not depend on shardquant or Quark. Needs numpy.

Usage: progressive_check.py QUARK_DIR SHARDQUANT_DIR [--label NAME]
Prints one line per weight with a problem and "PROGRESSIVE <label> weights=<n> identical=<i>
tc4_only=<t> unexplained=<u> codes_under_differing_scales=<p>%" (p: the share of code positions the
check cannot judge because a scale of theirs differs); exit 1 when unexplained > 0 or nothing was
checked.
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "I32": np.int32, "U8": np.uint8, "I8": np.int8, "F8_E4M3": np.uint8,
      "BF16": np.uint16, "F16": np.float16}
ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def load_dir(d: str) -> dict[str, np.ndarray]:
    out = {}
    for f in sorted(os.listdir(d)):
        if not f.endswith(".safetensors"):
            continue
        b = open(os.path.join(d, f), "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        h = json.loads(b[8:8 + n])
        for k, v in h.items():
            if k == "__metadata__":
                continue
            s, e = v["data_offsets"]
            out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=DT[v["dtype"]]).reshape(v["shape"])
    return out


def codes(w: np.ndarray, qscheme: str, shape_out: int, shape_in: int) -> np.ndarray:
    """The [out, in] code matrix of a second-stage weight."""
    if w.dtype != np.int32:
        return w.astype(np.int32)
    u = w.view(np.uint32)
    nib = np.stack([(u >> (4 * p)) & 0xF for p in range(8)], axis=-1)  # [..., words, 8]
    el = np.zeros_like(nib)
    el[..., ORDER] = nib  # element ORDER[p] is in nibble p
    flat = el.reshape(*u.shape[:-1], -1)
    if qscheme == "per_group":  # [in, out] transposed
        return flat[:, :shape_out].T.astype(np.int32)
    return flat[:, :shape_in].astype(np.int32)


def ulp_ok(a: np.ndarray, b: np.ndarray) -> bool:
    ai = a.astype(np.float32).view(np.int32).astype(np.int64)
    bi = b.astype(np.float32).view(np.int32).astype(np.int64)
    return bool(np.all(np.abs(ai - bi) <= 1))


def unit_mask(diff: np.ndarray, out: int, inn: int) -> np.ndarray:
    """[out, in] mask of elements whose scale (of shape [], [out] or [out, in/g]) differs."""
    if diff.ndim == 0:
        return np.full((out, inn), bool(diff))
    if diff.ndim == 1:
        return np.repeat(diff[:, None], inn, axis=1)
    g = inn // diff.shape[1]
    return np.repeat(diff, g, axis=1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ref")
    p.add_argument("cand")
    p.add_argument("--label", default="")
    a = p.parse_args(argv)
    cfg = json.load(open(os.path.join(a.cand, "config.json")))["quantization_config"]
    stages = cfg["global_quant_config"]["weight"]
    if not isinstance(stages, list) or len(stages) != 2:
        print("progressive_check: the candidate's global weight spec is not a pair", file=sys.stderr)
        return 1
    q2 = stages[1]["qscheme"]
    ref, cand = load_dir(a.ref), load_dir(a.cand)
    n = ident = tc4 = bad = 0
    covered = total = 0  # code positions under a differing scale (how much "explained" covers)
    for name in sorted(k for k in cand if k.endswith(".weight") and k + "_scale_2" in cand):
        if name + "_scale_2" not in ref:
            print(f"  {name}: no _scale_2 in the reference")
            bad += 1
            continue
        n += 1
        s1r, s1c = ref[name + "_scale"], cand[name + "_scale"]
        s2r, s2c = ref[name + "_scale_2"], cand[name + "_scale_2"]
        out = s2c.shape[0]
        w_c = cand[name]
        # Columns of the code matrix: the source in-size for per-group words (transposed) and
        # plain bytes; whole words for per-channel words (pad nibbles are 0 in both outputs).
        if w_c.dtype != np.int32:
            inn = w_c.shape[1]
        else:
            inn = w_c.shape[0] if q2 == "per_group" else w_c.shape[1] * 8
        cr = codes(ref[name], q2, out, inn)
        cc = codes(w_c, q2, out, inn)
        problems = []
        if s1c.ndim == 0 and not np.array_equal(s1r.view(np.uint32), s1c.view(np.uint32)):
            problems.append("per-tensor _scale differs")
        if not ulp_ok(s1r, s1c):
            problems.append("_scale differs by more than 1 ulp")
        if not ulp_ok(s2r, s2c):
            problems.append("_scale_2 differs by more than 1 ulp")
        d1 = s1r.view(np.uint32) != s1c.view(np.uint32)
        d2 = s2r.view(np.uint32) != s2c.view(np.uint32)
        explained = unit_mask(d1, out, cr.shape[1]) | unit_mask(d2, out, cr.shape[1])
        code_diff = cr != cc
        covered += int(explained.sum())
        total += explained.size
        unexplained = int(np.sum(code_diff & ~explained))
        if unexplained:
            r, c = np.argwhere(code_diff & ~explained)[0]
            problems.append(f"{unexplained} codes differ where both scales are equal, first at "
                            f"[{r}, {c}]: ref {cr[r, c]} cand {cc[r, c]}")
        if problems:
            bad += 1
            print(f"  {name}: " + "; ".join(problems))
        elif not code_diff.any() and not d1.any() and not d2.any():
            ident += 1
        else:
            tc4 += 1
    share = 100.0 * covered / total if total else 0.0
    print(f"PROGRESSIVE {a.label} weights={n} identical={ident} tc4_only={tc4} unexplained={bad} "
          f"codes_under_differing_scales={share:.1f}%")
    return 0 if n and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
