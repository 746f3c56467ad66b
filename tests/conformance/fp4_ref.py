#!/usr/bin/env python3
"""The scaled-FP4 rules of kernels/FORMATS-fp4.md (nvfp4, amdfp4*, amdfp4_global*) in torch, written
from the trace of Quark 0.13 and independent of shardquant's C++ (grid rounding by torch.round on
exact power-of-two scalings instead of bit tricks).

Owns: the second opinion for those schemes, with the one rule that differs between Quark on CUDA and
Quark on the CPU as a switch: `--division cuda` (amax / c as amax * RN32(1/c), what CUDA torch does
for a tensor divided by a Python number; shardquant's rule) or `--division cpu` (a true division).
`--division cpu` reproduces Quark-on-CPU file-to-file outputs, which checks the trace;
`--division cuda` is what shardquant must write.

Usage:
  fp4_ref.py check --quark-out DIR --model-dir IN --scheme S --division cpu|cuda
      recomputes every quantized weight of Quark's output DIR from the source checkpoint IN and
      compares the bytes; prints "N tensors identical, M differ" (exit 1 if any differ)
  fp4_ref.py golden  prints the golden vectors of FORMATS-fp4.md §7 (cuda rule) as hex
Must not depend on Quark or shardquant.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

F32 = torch.float32
EPS = 2.0 ** -23


def f32(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=F32)


def div_const(a: torch.Tensor, c: float, division: str) -> torch.Tensor:
    """RN32(a / c) as Quark's device computes it (a is f32)."""
    if division == "cuda":
        return a * (f32(1.0) / f32(c))
    return a / f32(c)


def nonzero(s: torch.Tensor) -> torch.Tensor:
    return torch.where(s == 0, f32(EPS), s)


def grid_round(y: torch.Tensor, min_exp: int, mbits: int, maxv: float) -> torch.Tensor:
    """Round |y| (f32, >= 0) to the nearest value with mbits mantissa bits and exponent >= min_exp
    (subnormal step 2^(min_exp - mbits)), ties to even, then saturate at maxv."""
    y = y.double()
    e = torch.floor(torch.log2(torch.where(y > 0, y, torch.ones_like(y))))
    e = torch.clamp(e, min=min_exp)
    step = torch.pow(2.0, e - mbits)
    q = torch.round(y / step) * step  # torch.round: half to even; y/step exact (power of two)
    return torch.clamp(q, max=maxv)


E2M1_VALUES = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def e2m1_codes(y: torch.Tensor) -> torch.Tensor:
    v = grid_round(y.abs(), 0, 1, 6.0)
    idx = torch.zeros_like(v, dtype=torch.int64)
    for k, val in enumerate(E2M1_VALUES):
        idx = torch.where(v == val, torch.full_like(idx, k), idx)
    neg = (y < 0) & (idx != 0)  # a zero result is +0
    return (idx | (neg.to(torch.int64) << 3)).to(torch.uint8)


def e5m3_value(y: torch.Tensor) -> torch.Tensor:
    y = torch.clamp(y, min=0.0, max=114688.0)
    return grid_round(y, -14, 3, 114688.0).to(F32)


def e5m3_code(v: torch.Tensor) -> torch.Tensor:
    v = v.double()
    sub = v < 2.0 ** -14
    e = torch.floor(torch.log2(torch.where(v > 0, v, torch.ones_like(v))))
    m = torch.round((v / torch.pow(2.0, e) - 1) * 8)
    nrm = ((e + 15) * 8 + m)
    code = torch.where(sub, torch.round(v / 2.0 ** -17), nrm)
    return code.to(torch.uint8)


def fp8_e4m3(y: torch.Tensor) -> torch.Tensor:
    """clamp(+-448) then RNE to e4m3fn (torch's cast is the reference op here)."""
    return torch.clamp(y, -448.0, 448.0).to(torch.float8_e4m3fn)


def blocks_of(w: torch.Tensor, g: int):
    """[rows, nb, g] f32 blocks (zero padded) of the last dim, and the row count / in."""
    x = w.to(F32).reshape(-1, w.shape[-1])
    rows, n = x.shape
    pad = (-n) % g
    if pad:
        x = torch.cat([x, torch.zeros(rows, pad, dtype=F32)], dim=1)
    return x.reshape(rows, -1, g), n


def pack(codes: torch.Tensor, n: int, lead_shape) -> torch.Tensor:
    c = codes.reshape(codes.shape[0], -1)[:, :n].to(torch.int32)
    p = (c[:, 0::2] | (c[:, 1::2] << 4)).to(torch.uint8)
    return p.reshape(*lead_shape, n // 2)


def quantize(scheme: str, w: torch.Tensor, division: str) -> dict[str, torch.Tensor]:
    g = {"nvfp4": 16, "fp4_block16_scale_e4m3": 16, "amdfp4": 16, "amdfp4_g32": 32,
         "amdfp4_global16": 16, "amdfp4_global32": 32}[scheme]
    x, n = blocks_of(w, g)
    amax = x.abs().amax(dim=-1, keepdim=True)  # exact; in the source dtype as well
    out: dict[str, torch.Tensor] = {}
    if scheme in ("amdfp4", "amdfp4_g32"):
        # scale = amax / 6 in the source dtype D (opmath f32, rounded to D), EPS if 0, E5M3.
        s = div_const(amax, 6.0, division).to(w.dtype)
        s = torch.where(s == 0, torch.tensor(EPS, dtype=w.dtype), s)
        s = e5m3_value(s.to(F32))
        out["_scale"] = s.to(w.dtype).reshape(x.shape[0], -1)
        d = nonzero(s)
    else:
        A = amax.max()
        c2 = 6.0 * (448.0 if scheme.startswith(("nvfp4", "fp4_block")) else 114688.0)
        s2 = nonzero(div_const(A, c2, division))
        s = nonzero(div_const(amax, 6.0, division))
        if scheme.startswith(("nvfp4", "fp4_block")):
            sfq = fp8_e4m3(s / s2).to(F32) * s2
            stored = fp8_e4m3(sfq / s2)
        else:
            sfq = e5m3_value(s / s2) * s2
            stored = e5m3_code(e5m3_value(sfq / s2))
        out["_scale"] = stored.reshape(x.shape[0], -1)
        out["_scale_2"] = s2.reshape(())
        d = nonzero(sfq)
    codes = e2m1_codes(x / d)
    out[""] = pack(codes, n, w.shape[:-1])
    return out


def load_checkpoint(d: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    t: dict[str, torch.Tensor] = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            t.update(load_file(os.path.join(d, f)))
    return t


def cmd_check(a) -> int:
    src = load_checkpoint(a.model_dir)
    q = load_checkpoint(a.quark_out)
    same = differ = 0
    for name, t in q.items():
        if not name.endswith(".weight") or t.dtype != torch.uint8 or name + "_scale" not in q:
            continue
        mine = quantize(a.scheme, src[name], a.division)
        for suf, v in mine.items():
            ref = q[name + suf]
            ok = ref.dtype == v.dtype and tuple(ref.shape) == tuple(v.shape) and torch.equal(
                ref.view(torch.uint8) if ref.dtype.itemsize == 1 else ref, v.view(torch.uint8)
                if v.dtype.itemsize == 1 else v)
            if ok:
                same += 1
            else:
                differ += 1
                if differ <= 5:
                    print(f"DIFF {name + suf} {ref.dtype} {tuple(ref.shape)} vs {v.dtype} {tuple(v.shape)}")
    print(f"{a.scheme} {a.division}: {same} tensors identical, {differ} differ")
    return 1 if differ else 0


def main() -> int:
    p = argparse.ArgumentParser()
    sp = p.add_subparsers(dest="cmd", required=True)
    c = sp.add_parser("check")
    c.add_argument("--quark-out", required=True)
    c.add_argument("--model-dir", required=True)
    c.add_argument("--scheme", required=True)
    c.add_argument("--division", choices=["cpu", "cuda"], default="cuda")
    g = sp.add_parser("quantize")
    g.add_argument("--scheme", required=True)
    g.add_argument("--division", choices=["cpu", "cuda"], default="cuda")
    g.add_argument("--bf16-hex", required=True, help="rows separated by ';', bf16 bits by ' '")
    a = p.parse_args()
    if a.cmd == "check":
        return cmd_check(a)
    rows = [[int(h, 16) for h in r.split()] for r in a.bf16_hex.split(";")]
    w = torch.tensor(rows, dtype=torch.int64).to(torch.int16).view(torch.bfloat16)
    for suf, v in quantize(a.scheme, w, a.division).items():
        b = v.contiguous().reshape(-1).view(torch.uint8).tolist()
        print(f"{suf or 'weight'} {v.dtype} {tuple(v.shape)}: " + " ".join(f"{x:02X}" for x in b))
    return 0


if __name__ == "__main__":
    sys.exit(main())
