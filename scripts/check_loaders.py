#!/usr/bin/env python3
"""Do shardquant's outputs run correctly where users load them? (issue 12)

Makes a small llama checkpoint with `shardquant make-checkpoint`, quantizes it with every scheme
(with the options the README recommends, or the defaults with --defaults), loads each output with
transformers + amd-quark (`AutoModelForCausalLM.from_pretrained(out)`), runs one forward pass on
32 random tokens and compares the logits with:

  * an independent reference: the bf16 source model with every quantized weight replaced by its
    dequantized value, decoded here from the stored tensors (formats.md §5.11, and the
    quark-importer layout of README "Loading the outputs"), and every quantized layer's input
    fake-quantized as the exported input spec says (dynamic fp8 / int8 / int4 / MX);
  * the bf16 source model.

Prints a markdown table; exits 1 when a row fails its tolerance:
  weight-only schemes: cosine vs reference >= 0.999;
  activation-quantized schemes: cosine vs reference >= 0.99. The script quantizes activations
  with its own code in the loader's arithmetic (fp8 per-tensor: the scale amax/448 in the
  spec's scale_type as Quark's observer computes it, i.e. fp32 for "float32" (int4_fp8) and the
  activation dtype for "float" (fp8, mxfp4_fp8), the quotient in the activation dtype;
  integers: the scale amax / ((qmax - qmin) / 2) in the activation dtype, the code
  round(x * (1 / s)) in fp32 as Quark's fake quantizers compute it; scaled FP4: the block and
  global scales of Quark's dynamic quantizers), which matches Quark's quantizer exactly;
  int4_wa_64 was at 0.8843 (300M; 0.956 at 64M) under a tolerance of 0.95 while the reference
  rounded round(x / s) (its dequantized weights: 0 of 90177536 differ): at a tie
  x / s = k + 0.5 (bf16 x and bf16 s make them common) Quark's fp32 reciprocal moves
  x * (1 / s) off the tie, so the reference chose the other code (int8: 0.999388 before); on the
  loader's own inputs of every layer, 59 of 2293760 int4 codes differed (2 of 32768 in the
  first layer, e.g. x = -1.5234375, s = 0.234375: x / s = -6.5 gave -6, Quark -7), and the
  random-weight model amplified them through its layers; with the reciprocal, 0 differ and the
  logits are at cosine 1.000000 (the 0.95 tolerance for int4 activations is gone);
  int4_fp8 was at 0.9892 while the reference rounded every fp8 scale to bf16: its weights
  decode identically (0 of the dequantized bf16 weights differ), but its input spec says
  scale_type "float32", so Quark keeps the scale in fp32 and 25% of the first layer's fp8 input
  codes differed (4098 of 16384); with the scale as the spec says, every layer's output is
  identical and the logits are at cosine 1.000000;
  every row: loads, nothing missing / mismatched / unexpected, logits finite.

Python is for this cross-check only; shardquant itself never needs it.
Usage: /work/venv/bin/python scripts/check_loaders.py --bin build/shardquant [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import torch

WEIGHT_ONLY_TOL = 0.999
ACT_TOL = 0.99

# Options per scheme for the recommended run: the loaders' options are harmless for the schemes
# they do not change, so every scheme gets the same two.
RECOMMENDED = ["--dynamic-activations", "--layout", "quark-importer"]


def run(cmd: list[str]) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout + r.stderr


def scheme_names(binary: str) -> list[str]:
    out = run([binary, "schemes"])
    names = []
    for line in out.splitlines():
        if not line.startswith(" ") and line != "schemes:":
            break  # the scheme rows end at the next section ("loaders ...")
        if line.startswith("  ") and line.split():
            names.append(line.split()[0])
    return names


# ---- decoding the stored tensors (independent of the loaders) ----------------------------------

FP4_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
REORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # nibble i holds element REORDER[i] ("reorder" pack method)


def unpack_nibbles(words: torch.Tensor, order: list[int], signed: bool) -> torch.Tensor:
    """[..., n] I32 words -> [..., 8n] codes; nibble i of word c is element 8c + order[i]."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    nib = torch.stack([(w >> (4 * i)) & 0xF for i in range(8)], dim=-1)  # [..., n, 8] by nibble
    out = torch.empty_like(nib)
    for i, e in enumerate(order):
        out[..., e] = nib[..., i]
    if signed:
        out = torch.where(out >= 8, out - 16, out)
    return out.reshape(*words.shape[:-1], words.shape[-1] * 8).to(torch.float32)


def mx_values(codes: torch.Tensor, ebits: int, mbits: int) -> torch.Tensor:
    bias = (1 << (ebits - 1)) - 1
    sign = torch.where((codes >> (ebits + mbits)) & 1 == 1, -1.0, 1.0)
    e = ((codes >> mbits) & ((1 << ebits) - 1)).to(torch.float32)
    m = (codes & ((1 << mbits) - 1)).to(torch.float32)
    sub = e == 0
    val = torch.where(
        sub, m / (1 << mbits) * 2.0 ** (1 - bias), (1 + m / (1 << mbits)) * 2.0 ** (e - bias)
    )
    return sign * val


def fp4_values(w: torch.Tensor, shape) -> torch.Tensor:
    """U8 [out, in/2] packed E2M1 (even element in the low nibble) -> [out, in] values."""
    out_f, in_f = shape
    b = w.to(torch.int64)
    lo, hi = b & 0xF, (b >> 4) & 0xF
    codes = torch.stack([lo, hi], dim=-1).reshape(out_f, in_f)
    mag = FP4_VALUES[codes & 7]
    return torch.where(codes & 8 != 0, -mag, mag)


def e5m3_values(codes: torch.Tensor) -> torch.Tensor:
    """Unsigned E5M3 codes (bias 15, subnormals m * 2^-17) -> fp32 values."""
    c = codes.to(torch.int64)
    e, m = (c >> 3).to(torch.float32), (c & 7).to(torch.float32)
    return torch.where(e == 0, m * 2.0**-17, (1 + m / 8) * 2.0 ** (e - 15))


def decode_scaled_fp4(t: dict, name: str, wspec, shape, importer: bool) -> torch.Tensor:
    """nvfp4 / amdfp4_global* (a [fp4 per-group, scale quantizer] pair) and amdfp4* (one fp4
    per-group spec with E5M3 scales), kernels/FORMATS-fp4.md: the block scale is the stored
    F8_E4M3 value or E5M3 code (or, amdfp4 in the file-to-file layout, the E5M3 value in the
    source dtype) times the F32 global scale when there is one."""
    out_f, in_f = shape
    if isinstance(wspec, list):
        g = wspec[0]["group_size"]
        if importer and wspec[1]["dtype"] == "fp8_e4m3":  # nvfp4 only: see importer_layout.h
            s, s2 = t[name + ".weight_quantizer.0.scale"], t[name + ".weight_quantizer.1.scale"]
        else:
            s, s2 = t[name + ".weight_scale"], t[name + ".weight_scale_2"]
        block = s.float() if wspec[1]["dtype"] == "fp8_e4m3" else e5m3_values(s)
        block = block * s2.float()
    else:
        g = wspec["group_size"]
        s = t[name + ".weight_scale"]
        block = e5m3_values(s) if s.dtype == torch.uint8 else s.float()
    return fp4_values(t[name + ".weight"], shape) * block.repeat_interleave(g, dim=1)[:, :in_f]


def decode_mx(w: torch.Tensor, s: torch.Tensor, fmt: str, shape) -> torch.Tensor:
    out_f, in_f = shape
    b = w.to(torch.int64)
    if fmt == "fp4":
        vals = fp4_values(w, shape)
    else:
        ebits, mbits = (2, 3) if fmt == "fp6_e2m3" else (3, 2)
        flat = b.reshape(-1, 3)
        word = flat[:, 0] | (flat[:, 1] << 8) | (flat[:, 2] << 16)
        codes = torch.stack([(word >> (6 * i)) & 0x3F for i in range(4)], dim=-1).reshape(out_f, in_f)
        vals = mx_values(codes, ebits, mbits)
    scale = 2.0 ** (s.to(torch.float32) - 127)  # [out, ceil(in/32)]
    return vals * scale.repeat_interleave(32, dim=1)[:, :in_f]


def decode_weight(t: dict, name: str, wspec, shape, importer: bool) -> torch.Tensor:
    """Dequantized [out, in] fp32 weight of module `name` from the stored tensors `t`."""
    out_f, in_f = shape
    w = t[name + ".weight"]
    first = wspec[0] if isinstance(wspec, list) else wspec
    if first["dtype"] == "fp4" and first.get("scale_format") != "e8m0":
        return decode_scaled_fp4(t, name, wspec, shape, importer)
    if isinstance(wspec, list):  # int4_fp8: fp8 per-tensor, then int4 per-channel (AWQ order)
        if importer:
            s1, s2 = t[name + ".weight_quantizer.0.scale"], t[name + ".weight_quantizer.1.scale"]
        else:
            s1, s2 = t[name + ".weight_scale"], t[name + ".weight_scale_2"]
        q = unpack_nibbles(w, REORDER, True)[:, :in_f]
        return q * s2.float()[:, None] * s1.float()
    s = t[name + ".weight_scale"]
    dt, qs = wspec["dtype"], wspec["qscheme"]
    if dt == "fp8_e4m3":
        v = w.view(torch.float8_e4m3fn).float()
        return v * (s.float()[:, None] if qs == "per_channel" else s.float())
    if dt == "int8":
        return w.float() * s.float()
    if dt in ("int4", "uint4"):
        signed = dt == "int4"
        order = REORDER if importer else list(range(8))
        zp_t = t.get(name + ".weight_zero_point")
        if qs == "per_group":
            g = wspec["group_size"]
            q = unpack_nibbles(w, order, signed)[:, :out_f].t()  # [in, out] -> [out, in]
            sc = s.float().t() if importer else s.float()  # -> [out, in/g]
            if zp_t is None:
                zp = torch.zeros_like(sc)
            elif importer:  # [in/g, out/8] packed -> [out, in/g]
                zp = unpack_nibbles(zp_t, order, False)[:, :out_f].t()
            else:
                zp = zp_t.float()
            return (q - zp.repeat_interleave(g, dim=1)[:, :in_f]) * sc.repeat_interleave(g, dim=1)[:, :in_f]
        q = unpack_nibbles(w, order, signed)[:, :in_f]
        if zp_t is None:
            zp = torch.zeros(out_f)
        elif importer:
            zp = unpack_nibbles(zp_t[None, :], order, False)[0, :out_f]
        else:
            zp = zp_t.float()
        return (q - zp[:, None]) * s.float()[:, None]
    if dt in ("fp4", "fp6_e2m3", "fp6_e3m2"):
        return decode_mx(w, s, dt, shape)
    raise ValueError(f"{name}: no decoder for weight dtype {dt}")


# ---- activation fake quantization as the exported input spec says ------------------------------


def fp8_round(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(-448, 448).to(torch.float8_e4m3fn).float()


def mx_round(y: torch.Tensor, fmt: str) -> torch.Tensor:
    ebits, mbits, emax, maxv = {
        "fp4": (2, 1, 2, 6.0),
        "fp6_e2m3": (2, 3, 2, 7.5),
        "fp6_e3m2": (3, 2, 4, 28.0),
        "e5m3": (5, 3, 16, 114688.0),  # unsigned; y >= 0
    }[fmt]
    bias = (1 << (ebits - 1)) - 1
    a = y.abs().clamp(max=maxv)
    e = torch.floor(torch.log2(a.clamp(min=2.0 ** (1 - bias)))).clamp(min=1 - bias)
    step = 2.0 ** (e - mbits)
    q = torch.round(a / step) * step  # torch.round is half-to-even
    return torch.sign(y) * q.clamp(max=maxv)


def fake_quant_fp4_two_level(x: torch.Tensor, spec: list) -> torch.Tensor:
    """nvfp4 inputs, [fp4 per-group dynamic, fp8_e4m3 per-tensor scale quantizer, dynamic with
    --dynamic-activations], as Quark's SequentialRealQuantizer computes them in fp32: block scale
    s = amax / 6, global s2 = max(s) / 448, s' = e4m3(s / s2) * s2, x' = fp4(x / s') * s'."""
    if spec[1]["dtype"] != "fp8_e4m3" or not all(p.get("is_dynamic") for p in spec):
        raise ValueError(f"no activation fake-quantizer for {spec}")
    eps = torch.finfo(torch.float32).eps
    g = spec[0]["group_size"]
    xf = x.float()
    v = xf.reshape(*xf.shape[:-1], -1, g)
    s = v.abs().amax(dim=-1, keepdim=True) / 6.0
    s = s.masked_fill(s == 0, eps)
    s2 = s.amax() / 448
    s2 = s2.masked_fill(s2 == 0, eps)
    s = fp8_round(s / s2) * s2
    s = s.masked_fill(s == 0, eps)
    return (mx_round(v / s, "fp4") * s).reshape(x.shape).to(x.dtype)


SCALE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def fake_quant_input(x: torch.Tensor, spec: dict) -> torch.Tensor:
    """Dynamic fake quantization of a layer input in Quark's arithmetic: fp8 divides and
    multiplies in the activation dtype; the integer formats compute their scale in it and
    round x * (1 / s) in fp32 (identical to the loader's codes on every layer's input)."""
    if isinstance(spec, list):
        return fake_quant_fp4_two_level(x, spec)
    dt, qs = spec["dtype"], spec["qscheme"]
    xf = x.float()
    if dt == "fp4" and spec.get("scale_format") == "e5m3":  # amdfp4: one level, E5M3 scales
        # The observer divides the bf16 block amax by 6 in the activation dtype and rounds it to
        # E5M3 there (scale_type float8_e5m3 names no torch dtype); the fake quantizer divides
        # in fp32.
        g = spec["group_size"]
        v = xf.reshape(*xf.shape[:-1], -1, g)
        s = (x.reshape(v.shape).abs().amax(dim=-1, keepdim=True) / 6.0)
        s = s.masked_fill(s == 0, torch.finfo(torch.float32).eps)
        s = mx_round(s.float(), "e5m3").to(x.dtype).float()
        s = s.masked_fill(s == 0, torch.finfo(torch.float32).eps)
        return (mx_round(v / s, "fp4") * s).reshape(x.shape).to(x.dtype)
    if dt == "fp8_e4m3":
        if qs == "per_tensor":
            # Quark's observer (get_scale, "float32" branch) divides the amax in the spec's
            # scale_type when it names a dtype (int4_fp8 exports "float32": the scale stays
            # fp32), in the activation dtype otherwise ("float"); the fake quantizer divides
            # and multiplies the activation by that 0-dim scale as it is.
            sd = SCALE_DTYPES.get(spec.get("scale_type"), x.dtype)
            s = x.abs().amax().to(sd) / 448
            s = s.masked_fill(s == 0, torch.finfo(torch.float32).eps)
        else:  # per token (per_channel on the last-but-one axis): the scale is cast to x.dtype
            s = (xf.abs().amax(dim=-1, keepdim=True) / 448).clamp(min=1e-12).to(x.dtype)
        return (fp8_round(x / s).to(x.dtype) * s).to(x.dtype)
    if dt in ("int8", "int4"):
        # Quark's observer divides the amax by (qmax - qmin) / 2 in the activation dtype (scale
        # "float" names no dtype); its fake quantizer (torch's fake_quantize_per_tensor_affine
        # for int8, fake_quantize_int_per_group_affine for int4) then rounds x * (1 / s) in
        # fp32, not x / s: at a tie x / s = k + 0.5 (common with bf16 x and s) the fp32
        # reciprocal moves the product off the tie, so dividing picked the other code.
        if dt == "int8":
            v, qmin, qmax = x.reshape(1, -1), -128, 127
        else:  # per-group dynamic along the last dim
            v, qmin, qmax = x.reshape(*x.shape[:-1], -1, spec["group_size"]), -8, 7
        s = v.abs().amax(dim=-1, keepdim=True) / ((qmax - qmin) / 2)
        s = s.float().clamp(min=torch.finfo(torch.float32).eps)
        q = torch.round(v.float() * (1.0 / s)).clamp(qmin, qmax)
        return (q * s).reshape(x.shape).to(x.dtype)
    if dt in ("fp4", "fp6_e2m3", "fp6_e3m2"):
        mbits, emax = {"fp4": (1, 2), "fp6_e2m3": (3, 2), "fp6_e3m2": (2, 4)}[dt]
        v = xf.reshape(*xf.shape[:-1], -1, 32)
        a = v.abs().amax(dim=-1, keepdim=True)
        bits = a.view(torch.int32).to(torch.int64)
        r = ((bits + (1 << (22 - mbits))) & 0xFF800000).to(torch.int32).view(torch.float32)
        k = (torch.floor(torch.log2(r)) - emax).clamp(-127, 127)
        k = torch.where(a == 0, torch.full_like(k, -127), k)
        s = 2.0**k
        return (mx_round(v / s, dt) * s).reshape(x.shape).to(x.dtype)
    raise ValueError(f"no activation fake-quantizer for {spec}")


# ---- the comparison -------------------------------------------------------------------------------


def load_tensors(out_dir: str) -> dict:
    from safetensors.torch import load_file

    t = {}
    for f in sorted(os.listdir(out_dir)):
        if f.endswith(".safetensors"):
            t.update(load_file(os.path.join(out_dir, f)))
    return t


def layer_config(qc: dict, module: str):
    import fnmatch

    if module in qc.get("exclude", []):
        return None
    for pat, cfg in qc.get("layer_quant_config", {}).items():
        if fnmatch.fnmatchcase(module, pat):
            return cfg
    return qc["global_quant_config"]


def reference_logits(src: str, out: str, tokens, device, importer: bool) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    qc = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
    t = load_tensors(out)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16).to(device).eval()
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or name + ".weight" not in t:
            continue
        cfg = layer_config(qc, name)
        if cfg is None or t[name + ".weight"].dtype == torch.bfloat16:
            continue
        shape = (mod.out_features, mod.in_features)
        w = decode_weight(t, name, cfg["weight"], shape, importer)
        mod.weight.data = w.to(torch.bfloat16).to(device)
        spec = cfg.get("input_tensors")
        if spec is not None:
            mod.register_forward_pre_hook(lambda m, args, spec=spec: (fake_quant_input(args[0], spec),))
    with torch.no_grad():
        return model(tokens).logits.float().cpu()


def source_logits(src: str, tokens, device) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16).to(device).eval()
    with torch.no_grad():
        return model(tokens).logits.float().cpu()


def loaded_logits(out: str, tokens, device):
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    model = model.to(device).eval()
    with torch.no_grad():
        logits = model(tokens).logits.float().cpu()
    return logits, info


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    return float((a @ b) / (a.norm() * b.norm()).clamp(min=1e-300))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/shardquant", help="the shardquant program")
    ap.add_argument("--device", default="cpu", help="torch device for the forward passes")
    ap.add_argument("--size", default="64M", help="make-checkpoint --size of the llama model")
    ap.add_argument("--schemes", nargs="*", help="only these schemes (default: every scheme)")
    ap.add_argument("--defaults", action="store_true", help="quantize with the default options")
    ap.add_argument("--work", help="scratch folder (default: a new temporary one)")
    ap.add_argument("--keep-outputs", action="store_true",
                    help="keep each scheme's quantized output (default: removed after its row)")
    a = ap.parse_args(argv)

    import quark  # noqa: F401  (registers the "quark" quantization method in transformers)
    import transformers

    work = a.work or tempfile.mkdtemp(prefix="check_loaders_")
    src = os.path.join(work, "src")
    if not os.path.exists(os.path.join(src, "config.json")):
        run([a.bin, "make-checkpoint", "--arch", "llama", "--size", a.size, "--out", src])
    cfg = json.load(open(os.path.join(src, "config.json")))
    torch.manual_seed(0)
    tokens = torch.randint(0, cfg["vocab_size"], (1, 32)).to(a.device)
    base = source_logits(src, tokens, a.device)

    opts = [] if a.defaults else RECOMMENDED
    print(
        f"transformers {transformers.__version__}, amd-quark {__import__('importlib.metadata').metadata.version('amd-quark')}, "
        f"torch {torch.__version__}; llama {a.size} from make-checkpoint; device {a.device}"
    )
    print(f"options: {' '.join(opts) if opts else '(defaults)'}\n")
    print("| scheme | loads | missing / mismatched / unexpected | finite | cos vs reference | cos vs source | tolerance | ok |")
    print("|---|---|---|---|---|---|---|---|")
    failed = 0
    for s in a.schemes or scheme_names(a.bin):
        out = os.path.join(work, s)
        row = {"loads": "no", "keys": "-", "finite": "-", "ref": "-", "src": "-"}
        tol = WEIGHT_ONLY_TOL
        ok = False
        try:
            run([a.bin, "quantize", "--model-dir", src, "--output-dir", out, "--scheme", s,
                 "--overwrite", "--quiet", *opts])
            qc = json.load(open(os.path.join(out, "config.json")))["quantization_config"]
            if qc["global_quant_config"].get("input_tensors") is not None:
                tol = ACT_TOL
            logits, info = loaded_logits(out, tokens, a.device)
            row["loads"] = "yes"
            miss = [k for k in info.get("missing_keys", [])]
            mism = [k if isinstance(k, str) else k[0] for k in info.get("mismatched_keys", [])]
            unex = [k for k in info.get("unexpected_keys", [])]
            row["keys"] = f"{len(miss)} / {len(mism)} / {len(unex)}"
            if miss or mism or unex:
                first = (miss or mism or unex)[0]
                row["keys"] += f" (e.g. `{first}`)"
            fin = bool(torch.isfinite(logits).all())
            row["finite"] = "yes" if fin else "**no**"
            ref = reference_logits(src, out, tokens, a.device, importer="quark-importer" in opts)
            cr, cs = cosine(logits, ref), cosine(logits, base)
            row["ref"], row["src"] = f"{cr:.6f}", f"{cs:.4f}"
            ok = fin and not (miss or mism or unex) and cr >= tol and not math.isnan(cr)
        except Exception as e:  # noqa: BLE001  (reported in the table)
            row["keys"] = f"error: {str(e).splitlines()[0][:120]}" if str(e) else type(e).__name__
        failed += not ok
        if not a.keep_outputs:
            shutil.rmtree(out, ignore_errors=True)
        print(f"| {s} | {row['loads']} | {row['keys']} | {row['finite']} | {row['ref']} | {row['src']} "
              f"| {tol} | {'yes' if ok else '**FAIL**'} |", flush=True)
    print(f"\n{failed} row(s) failed" if failed else "\nall rows pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
