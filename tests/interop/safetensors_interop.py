#!/usr/bin/env python3
"""Interoperability with Python's `safetensors` (the format's reference implementation).

1. Python writes a checkpoint (torch.save_file: every dtype torch and safetensors share, odd
   shapes, a scalar, an empty tensor, two shards with an index); `shardquant inspect --json` must
   report every tensor with the dtype and shape Python wrote.
2. shardquant passes the checkpoint through (`--exclude '*'`: nothing quantized) and Python's
   safetensors loads every output shard: each tensor equals the one Python wrote.
3. shardquant quantizes it (mxfp4, fp8, int4_wo_32); Python's safetensors loads the outputs and
   the dtypes and shapes are those of formats.md §5.1.
Usage: safetensors_interop.py SHARDQUANT_BINARY WORK_DIR      (needs torch + safetensors)
Prints 'N passed, M failed' and exits non-zero on any failure.
"""
import json
import os
import shutil
import subprocess
import sys

import torch
from safetensors.torch import load_file, save_file

sq, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
src = os.path.join(work, "src")
os.makedirs(src)
g = torch.Generator().manual_seed(7)

def randn(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, generator=g).to(dtype)

shard1 = {
    "model.layers.0.mlp.down_proj.weight": randn(96, 128),
    "model.layers.0.mlp.up_proj.weight": randn(128, 96),
    "model.layers.0.self_attn.q_proj.weight": randn(64, 96, dtype=torch.float16),
    "model.layers.0.self_attn.q_proj.bias": randn(64, dtype=torch.float32),
    "model.embed_tokens.weight": randn(50, 96),
    "model.norm.weight": randn(96),
    "extra.f64": torch.randn(3, 5, generator=g, dtype=torch.float64),
    "extra.i64": torch.arange(-7, 8, dtype=torch.int64).reshape(3, 5),
    "extra.i32": torch.arange(-6, 6, dtype=torch.int32),
    "extra.i16": torch.arange(-6, 6, dtype=torch.int16),
    "extra.i8": torch.arange(-128, 128, dtype=torch.int8).reshape(16, 16),
    "extra.u8": torch.arange(0, 256, dtype=torch.int32).to(torch.uint8),
    "extra.bool": torch.tensor([True, False, True]),
    "extra.scalar": torch.tensor(3.5, dtype=torch.float32),
    "extra.empty": torch.zeros(0, 4, dtype=torch.bfloat16),
}
if hasattr(torch, "float8_e4m3fn"):
    shard1["extra.f8_e4m3"] = randn(4, 8, dtype=torch.float32).to(torch.float8_e4m3fn)
    shard1["extra.f8_e5m2"] = randn(4, 8, dtype=torch.float32).to(torch.float8_e5m2)
shard2 = {
    "model.layers.1.mlp.down_proj.weight": randn(96, 128),
    "lm_head.weight": randn(50, 96),
}
save_file(shard1, os.path.join(src, "model-00001-of-00002.safetensors"))
save_file(shard2, os.path.join(src, "model-00002-of-00002.safetensors"))
wm = {k: "model-00001-of-00002.safetensors" for k in shard1}
wm.update({k: "model-00002-of-00002.safetensors" for k in shard2})
json.dump({"metadata": {}, "weight_map": wm}, open(os.path.join(src, "model.safetensors.index.json"), "w"))
json.dump({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "torch_dtype": "bfloat16"},
          open(os.path.join(src, "config.json"), "w"))
written = {**shard1, **shard2}

passed = failed = 0
def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what)

ST = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.float64: "F64",
      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
      torch.bool: "BOOL"}
if hasattr(torch, "float8_e4m3fn"):
    ST[torch.float8_e4m3fn] = "F8_E4M3"
    ST[torch.float8_e5m2] = "F8_E5M2"

# 1. shardquant reads what Python wrote.
for fn in sorted(os.listdir(src)):
    if not fn.endswith(".safetensors"):
        continue
    r = subprocess.run([sq, "inspect", "--json", os.path.join(src, fn)], capture_output=True, text=True)
    check(r.returncode == 0, f"inspect {fn}: {r.stderr.strip()}")
    if r.returncode:
        continue
    doc = json.loads(r.stdout)
    tensors = doc.get("tensors") or doc.get("files", [{}])[0].get("tensors", [])
    seen = {t["name"]: t for t in tensors}
    for name, t in (shard1 if "00001" in fn else shard2).items():
        got = seen.get(name)
        check(got is not None and got["dtype"] == ST[t.dtype] and list(got["shape"]) == list(t.shape),
              f"inspect {fn} {name}: {got} vs {ST[t.dtype]} {list(t.shape)}")

# 2. pass-through: Python loads shardquant's shards and every tensor is equal.
out = os.path.join(work, "pass")
r = subprocess.run([sq, "quantize", "--model-dir", src, "--output-dir", out, "--scheme", "mxfp4",
                    "--exclude", "*", "--device", os.environ.get("SQ_DEVICE", "cpu"), "--quiet"],
                   capture_output=True, text=True)
check(r.returncode == 0, f"pass-through run: {r.stderr.strip()}")
if r.returncode == 0:
    loaded = {}
    for fn in sorted(os.listdir(out)):
        if fn.endswith(".safetensors"):
            loaded.update(load_file(os.path.join(out, fn)))
    check(set(loaded) == set(written), f"pass-through names: {sorted(set(loaded) ^ set(written))}")
    for name, t in written.items():
        if name in loaded:
            a, b = loaded[name], t
            same = a.dtype == b.dtype and a.shape == b.shape and (
                a.numel() == 0 or a.reshape(-1).view(torch.uint8).equal(b.reshape(-1).view(torch.uint8)))
            check(same, f"pass-through {name}: {a.dtype} {tuple(a.shape)} vs {b.dtype} {tuple(b.shape)}")

# 3. quantized outputs load in Python with the scheme's dtypes and shapes.
expect = {
    "mxfp4": {"": (torch.uint8, [96, 64]), "_scale": (torch.uint8, [96, 4])},
    "fp8": {"": (getattr(torch, "float8_e4m3fn", None), [96, 128]), "_scale": (torch.float32, [])},
    "int4_wo_32": {"": (torch.int32, [128, 12]), "_scale": (torch.float32, [96, 4])},
}
for scheme, outs in expect.items():
    od = os.path.join(work, scheme)
    r = subprocess.run([sq, "quantize", "--model-dir", src, "--output-dir", od, "--scheme", scheme,
                        "--device", os.environ.get("SQ_DEVICE", "cpu"), "--quiet"], capture_output=True, text=True)
    check(r.returncode == 0, f"{scheme} run: {r.stderr.strip()}")
    if r.returncode:
        continue
    loaded = {}
    for fn in sorted(os.listdir(od)):
        if fn.endswith(".safetensors"):
            loaded.update(load_file(os.path.join(od, fn)))
    idx = json.load(open(os.path.join(od, "model.safetensors.index.json")))
    check(set(idx["weight_map"]) == set(loaded), f"{scheme}: index lists exactly the tensors in the shards")
    w = "model.layers.0.mlp.down_proj.weight"
    for suffix, (dt, shape) in outs.items():
        t = loaded.get(w + suffix)
        check(t is not None and (dt is None or t.dtype == dt) and list(t.shape) == shape,
              f"{scheme} {w + suffix}: {None if t is None else (t.dtype, list(t.shape))} vs {dt} {shape}")
    check(torch.equal(loaded["model.norm.weight"], written["model.norm.weight"]), f"{scheme}: norm unchanged")

print(f"safetensors interop: torch {torch.__version__}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
