#!/usr/bin/env python3
"""Golden vectors for kernels/hadamard.{h,cpp}, made with AMD Quark 0.13's own rotation functions
(quark.torch.algorithm.rotation.rotation_utils / hadamard, the ones file2file_rotation.py calls).

Owns: tests/data/rotation/goldens.safetensors: for each case NAME, NAME.in (the source weight) and
NAME.out (Quark's rotated weight, same dtype), and irot.N (Quark's int8 input_rotation buffer).
Cases (kernels/FORMATS-rotation.md says which rule each checks):
  full.N.DT      rotate_input_channels_hadamard(w, N) with N == in_features (matmul_hadU, source dtype)
  blocked.N.R.DT rotate_input_channels_hadamard(w, R) with R < in_features (float64 rotate_with_size)
  r2out.N.H.DT   rotate_out_channels(w, get_rotation_matrix(H, random=False))  (w is [N, 8])
  r2in.N.H.DT    rotate_in_channels(w, get_rotation_matrix(H, random=False))
Must not depend on shardquant. Run with /work/venv/bin/python (torch, scipy, amd-quark 0.13).
"""
import sys

import torch
from safetensors.torch import save_file

from quark.torch.algorithm.rotation.hadamard import _get_hadamard_K
from quark.torch.algorithm.rotation.rotation_utils import (build_input_rotation_int8, get_rotation_matrix,
                                                           rotate_in_channels, rotate_input_channels_hadamard,
                                                           rotate_out_channels)

DTS = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


def weight(rows: int, cols: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g, dtype=torch.float64) / cols ** 0.5
    w[0, 1] = 7.5  # an outlier, which the rotation spreads over the row
    w[rows - 1] = 0.0  # an all-zero row
    if cols > 3:
        w[1, 3] = -0.0
    return w


def main(out: str) -> None:
    t: dict[str, torch.Tensor] = {}
    seed = 1
    for dn, dt in DTS.items():
        for n in (2, 64, 256, 768, 40, 80, 112, 344, 832):
            w = weight(5, n, seed).to(dt); seed += 1
            t[f"full.{n}.{dn}.in"] = w
            t[f"full.{n}.{dn}.out"] = rotate_input_channels_hadamard(w, n)[0].contiguous()
        for n, r in ((256, 64), (768, 96), (240, 120), (1024, 512)):
            w = weight(4, n, seed).to(dt); seed += 1
            t[f"blocked.{n}.{r}.{dn}.in"] = w
            t[f"blocked.{n}.{r}.{dn}.out"] = rotate_input_channels_hadamard(w, r)[0].contiguous()
        for n, h in ((128, 64), (192, 96), (256, 128), (80, 80)):
            w = weight(n, 8, seed).to(dt); seed += 1
            rot = get_rotation_matrix(h, "cpu", random=False)
            t[f"r2out.{n}.{h}.{dn}.in"] = w
            t[f"r2out.{n}.{h}.{dn}.out"] = rotate_out_channels(w, rot).contiguous()
            w = weight(8, n, seed).to(dt); seed += 1
            t[f"r2in.{n}.{h}.{dn}.in"] = w
            t[f"r2in.{n}.{h}.{dn}.out"] = rotate_in_channels(w, rot).contiguous()
    for n in (2, 40, 96, 256, 344):
        base, k = _get_hadamard_K(n)
        t[f"irot.{n}"] = build_input_rotation_int8(base, n, k).contiguous()
    save_file(t, out)
    print(f"rotation_goldens: {len(t)} tensors -> {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/rotation/goldens.safetensors")
