#!/usr/bin/env python3
"""The conformance checkpoint matrix made with `shardquant make-checkpoint`, and the Quark runs
on it.

Owns: the list of synthetic checkpoints (name -> make-checkpoint arguments), making them, and
writing quark_ref.py --jobs files for them (every scheme on every checkpoint, plus keep-original
runs on the FP8 and compressed-tensors sources). Must not depend on Quark or torch (numpy-free:
it only runs the binary and writes text).

Checkpoint names: ARCH-DTYPE[-odd][-fp8src|-dsv4|-ps<ROWS>|-ct-<VARIANT>] with DTYPE the model
dtype (bf16/fp16/fp32; fp8src/dsv4/ps sources have a BF16 model; dsv4 = block FP8 with the routed
experts as DeepSeek-V4 MXFP4, make-checkpoint --dsv4-mxfp4). `args_of(name)` turns a name back into the
make-checkpoint arguments, so a name is all a reference bundle needs to regenerate its input.

Usage:
  sq_matrix.py list [--set all|plain|fp8|ct|cpu]
  sq_matrix.py make --sq BIN --root DIR [--set ...] [--only n1,n2]
  sq_matrix.py jobs --root DIR --out-root QDIR [--set ...] [--schemes a,b] [--cpu-safe] > jobs.txt
  sq_matrix.py args NAME        the make-checkpoint arguments of one name
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

SIZE = "6000000"
SHARD = "2500000"
SEED = "0"

# Every arch has every dtype; odd shapes on one dtype per arch plus one more.
PLAIN = ["llama-bf16", "llama-fp16-odd", "llama-fp32",
         "deepseek_v3-bf16-odd", "deepseek_v3-fp16", "deepseek_v3-fp32-odd",
         "qwen3_moe-bf16", "qwen3_moe-fp16-odd", "qwen3_moe-fp32"]
# DeepSeek-style block FP8 (BF16 model), partial blocks (odd), TP-presharded chunks whose row
# count is not a multiple of 128 (341: llama-odd gate/up 682 rows; 96: deepseek q_b_proj 192 and
# dense gate/up 768; 64: qwen3_moe's 128-, 256- and 512-row weights, one scale row per chunk).
FP8 = ["llama-bf16-fp8src", "deepseek_v3-bf16-fp8src", "qwen3_moe-bf16-odd-fp8src",
       "deepseek_v3-bf16-odd-fp8src",
       "llama-bf16-odd-ps341", "deepseek_v3-bf16-ps96", "qwen3_moe-bf16-ps64"]
# compressed-tensors variants spread over archs and scale dtypes (scales are stored in the
# model dtype), plus odd shapes where the variant allows partial groups/blocks.
CT = ["llama-bf16-ct-int4-group", "llama-bf16-ct-int4-group-asym", "llama-fp16-ct-int4-channel",
      "llama-bf16-ct-fp8-tensor", "llama-bf16-ct-naive-int8", "llama-bf16-ct-mixed",
      "qwen3_moe-bf16-ct-int4-group-actorder", "qwen3_moe-fp16-ct-int4-channel-asym",
      "qwen3_moe-bf16-ct-fp8-channel", "qwen3_moe-bf16-ct-int8-asym", "qwen3_moe-bf16-ct-multi-group",
      "deepseek_v3-fp32-ct-int8-channel", "deepseek_v3-bf16-ct-fp8-block",
      "llama-bf16-odd-ct-int4-channel-asym", "qwen3_moe-bf16-odd-ct-fp8-block"]
# FP4-packed sources (kernels/FORMATS-fp4-sources.md): compressed-tensors nvfp4/mxfp4 over archs
# and model dtypes (CT recovers them to BF16 whatever the model dtype), DeepSeek-V4 MXFP4 experts.
FP4 = ["qwen3_moe-bf16-ct-nvfp4", "llama-fp16-ct-nvfp4", "deepseek_v3-fp32-ct-nvfp4",
       "qwen3_moe-bf16-ct-mxfp4", "llama-fp32-ct-mxfp4",
       "deepseek_v3-bf16-dsv4", "qwen3_moe-bf16-dsv4"]
# "all" runs the newest references first, so a run cut by its time limit still has them.
SETS = {"plain": PLAIN, "fp8": FP8, "ct": CT, "fp4": FP4,
        "all": FP4 + CT + FP8[4:] + FP8[:4] + PLAIN}

# Checkpoints where Quark 0.13 (+ compressed-tensors 0.20) is known to depart from formats.md; a
# replay counts a difference there as documented, not failed. Measured with Quark on the CPU
# (its compressed-tensors loading is device-independent torch code).
DOCUMENTED = {
    "llama-bf16-ct-mixed": "[DIFF 7] Quark reads only config_groups.group_0 and the top-level format; "
                           "'mixed-precision' is no compressor: KeyError",
    "deepseek_v3-bf16-ct-fp8-block": "[DIFF 22] Quark builds QuantizationArgs without block_structure: "
                                     "ValidationError for strategy block",
    "qwen3_moe-bf16-odd-ct-fp8-block": "[DIFF 22] Quark builds QuantizationArgs without block_structure: "
                                       "ValidationError for strategy block",
    "qwen3_moe-bf16-ct-int4-group-actorder": "Quark's decompression ignores weight_g_idx (group j div g), "
                                             "formats.md uses g_idx[j]",
}
# DeepSeek-V4 MXFP4 experts: Quark's FP8-source recovery needs CUDA (on the CPU it logs an error and
# writes nothing), so these have no CPU reference; the GPU session makes them.
CUDA_ONLY = {"deepseek_v3-bf16-dsv4", "qwen3_moe-bf16-dsv4"}

# Schemes whose Quark-on-CPU output equals Quark-on-CUDA on F32 inputs (README: TC1/TC4/TC6 hit
# only BF16/F16 fp8 division, per-channel/per-group scales and int4_fp8).
CPU_SAFE_SCHEMES = ["int8", "fp8", "mxfp4", "mxfp4_weight_only", "mxfp6_e2m3", "mxfp6_e3m2",
                    "mxfp4_mxfp6_e2m3", "mxfp4_fp8"]
ALL_SCHEMES = ["int4_wo_32", "int4_wo_64", "int4_wo_128", "int4_wo_per_channel", "int4_wa_64",
               "uint4_wo_32", "uint4_wo_64", "uint4_wo_128", "uint4_wo_per_channel", "int8", "fp8",
               "ptpc_fp8", "mxfp4", "mxfp4_weight_only", "mxfp6_e2m3", "mxfp6_e3m2",
               "mxfp4_mxfp6_e2m3", "mxfp4_fp8", "int4_fp8"]
# compressed-tensors checkpoints get every scheme too (the first GPU run used one scheme per
# quantizer family; the stored bundle has all 19 since its second run).
CT_SCHEMES = ALL_SCHEMES
ARCHS = ["deepseek_v3", "qwen3_moe", "llama"]


def args_of(name: str) -> list[str]:
    """make-checkpoint arguments (without --out) of a matrix name."""
    arch = next((a for a in ARCHS if name.startswith(a + "-")), None)
    if arch is None:
        raise SystemExit(f"sq_matrix: no architecture in checkpoint name {name!r}")
    rest = name[len(arch) + 1:]
    ct = None
    if "-ct-" in rest:
        rest, ct = rest.split("-ct-", 1)
    parts = rest.split("-")
    dtype = parts.pop(0)
    a = ["--arch", arch, "--size", SIZE, "--shard-size", SHARD, "--seed", SEED]
    ps = None
    for p in parts:
        if p == "odd":
            a.append("--odd-shapes")
        elif p == "fp8src":
            dtype = "fp8"
        elif p == "dsv4":
            dtype = "fp8"
            a.append("--dsv4-mxfp4")
        elif p.startswith("ps") and p[2:].isdigit():
            dtype, ps = "fp8", p[2:]
        else:
            raise SystemExit(f"sq_matrix: unknown part {p!r} in {name!r}")
    a += ["--dtype", dtype]
    if ps:
        a += ["--presharded", ps]
    if ct:
        a += ["--ct", ct]
    return a


def make(sq: str, root: str, names: list[str]) -> None:
    os.makedirs(root, exist_ok=True)
    for n in names:
        d = os.path.join(root, n)
        if os.path.isfile(os.path.join(d, "config.json")):
            continue
        subprocess.run([sq, "make-checkpoint", *args_of(n), "--out", d], check=True, stdout=subprocess.DEVNULL)


def jobs(root: str, out_root: str, names: list[str], schemes: list[str] | None, cpu_safe: bool) -> list[str]:
    """quark_ref --jobs lines: every scheme on every plain and FP8 checkpoint, CT_SCHEMES on the
    compressed-tensors ones (explicit `schemes` or cpu_safe: those everywhere); keep-original
    runs on the FP8 and two compressed-tensors sources (OUTPUT_DIR = out_root/<label>/<scheme>,
    label = checkpoint name, + '-keep' for keep-original)."""
    lines = []
    keep = [s for s in ("mxfp4", "int8", "ptpc_fp8")
            if s in (schemes or (CPU_SAFE_SCHEMES if cpu_safe else ALL_SCHEMES))]
    for n in names:
        use = schemes or (CPU_SAFE_SCHEMES if cpu_safe else CT_SCHEMES if "-ct-" in n else ALL_SCHEMES)
        if cpu_safe:
            use = [s for s in use if s in CPU_SAFE_SCHEMES]
        for s in use:
            lines.append(f"{root}/{n} {s} {out_root}/{n}/{s}")
        if ("-fp8src" in n or "-ps" in n or "-dsv4" in n or n.endswith("-ct-int4-group")
                or n.endswith("-ct-fp8-channel") or n.endswith("-ct-nvfp4") or n.endswith("-ct-mxfp4")):
            for s in keep:
                lines.append(f"{root}/{n} {s} {out_root}/{n}-keep/{s} --keep-original")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", choices=["list", "make", "jobs", "args"])
    p.add_argument("name", nargs="?", help="args: the checkpoint name")
    p.add_argument("--set", default="all", choices=sorted(SETS))
    p.add_argument("--only", default=None, help="comma-separated names (instead of --set)")
    p.add_argument("--sq", default=None)
    p.add_argument("--root", default=None)
    p.add_argument("--out-root", default=None)
    p.add_argument("--schemes", default=None)
    p.add_argument("--cpu-safe", action="store_true", help="only schemes where Quark-CPU = Quark-CUDA on F32")
    a = p.parse_args(argv)
    names = a.only.split(",") if a.only else SETS[a.set]
    if a.cmd == "list":
        print("\n".join(names))
    elif a.cmd == "args":
        print(" ".join(args_of(a.name)))
    elif a.cmd == "make":
        if not (a.sq and a.root):
            p.error("make needs --sq and --root")
        make(a.sq, a.root, names)
    else:
        if not (a.root and a.out_root):
            p.error("jobs needs --root and --out-root")
        schemes = a.schemes.split(",") if a.schemes else None
        print("\n".join(jobs(os.path.abspath(a.root), os.path.abspath(a.out_root), names, schemes, a.cpu_safe)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
