#!/usr/bin/env python3
"""Small synthetic checkpoints for conformance runs, in Python (numpy only), for when
`shardquant make-checkpoint` is not available (or to make references on a machine without it).

Owns: tensor names/shapes of llama, deepseek_v3 and qwen3_moe at toy sizes (2 layers; deepseek_v3's
layer 1 and every qwen3_moe layer are MoE), a config.json with the real model_type (so Quark's
LLMTemplate picks its default exclude list), sharding with an index, a few side files.
Values: trained-like normal weights (std 1/sqrt(in), per-row spread, a few outliers, one all-zero
row per weight), norms around 1, an F32 router bias; deterministic in (seed, tensor name).
--odd-shapes: intermediate sizes and DeepSeek LoRA ranks = 2 (mod 4), odd vocabulary, as
shardquant make-checkpoint does, so per-group int4/uint4 and MXFP6 schemes must refuse some weights.
Must not depend on torch, Quark or shardquant.

Also: --arch qwen3_5_moe (fused 3-D expert tensors `mlp.experts.gate_up_proj` / `down_proj`, split by
Quark's template converters) and --fp8-source (DeepSeek-style block-FP8 weights with F32
`weight_scale_inv`, 128x128 blocks, `quant_method: fp8`; lm_head and routers stay in --dtype).

Usage: make_ckpt.py --arch llama|deepseek_v3|qwen3_moe|qwen3_5_moe --dtype bf16|fp16|fp32 --out DIR
                    [--odd-shapes] [--fp8-source] [--shard-size BYTES] [--seed N]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np

DT = {"bf16": ("BF16", "bfloat16"), "fp16": ("F16", "float16"), "fp32": ("F32", "float32")}


def odd(x: int) -> int:
    return x // 4 * 4 + 2


def design(arch: str, odd_shapes: bool):
    """Returns (config dict, [(name, shape, kind)]) with kind in linear|embedding|norm|bias."""
    H, L = 256, 2
    V = 512 + (1 if odd_shapes else 0)
    t = [("model.embed_tokens.weight", [V, H], "embedding")]
    if arch == "llama":
        I = odd(768) if odd_shapes else 768
        kv = 128
        for i in range(L):
            p = f"model.layers.{i}."
            t += [(p + "input_layernorm.weight", [H], "norm"),
                  (p + "self_attn.q_proj.weight", [H, H], "linear"),
                  (p + "self_attn.k_proj.weight", [kv, H], "linear"),
                  (p + "self_attn.v_proj.weight", [kv, H], "linear"),
                  (p + "self_attn.o_proj.weight", [H, H], "linear"),
                  (p + "post_attention_layernorm.weight", [H], "norm"),
                  (p + "mlp.gate_proj.weight", [I, H], "linear"),
                  (p + "mlp.up_proj.weight", [I, H], "linear"),
                  (p + "mlp.down_proj.weight", [H, I], "linear")]
        cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": H, "intermediate_size": I,
               "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": L,
               "num_key_value_heads": 2, "rms_norm_eps": 1e-05, "tie_word_embeddings": False, "vocab_size": V}
    elif arch == "deepseek_v3":
        ql = odd(128) if odd_shapes else 128
        kvl = odd(64) if odd_shapes else 64
        I = odd(512) if odd_shapes else 512
        mI = odd(128) if odd_shapes else 128
        heads, nope, rope, vd, E = 4, 32, 16, 32, 4
        for i in range(L):
            p = f"model.layers.{i}."
            t += [(p + "input_layernorm.weight", [H], "norm"),
                  (p + "self_attn.q_a_proj.weight", [ql, H], "linear"),
                  (p + "self_attn.q_a_layernorm.weight", [ql], "norm"),
                  (p + "self_attn.q_b_proj.weight", [heads * (nope + rope), ql], "linear"),
                  (p + "self_attn.kv_a_proj_with_mqa.weight", [kvl + rope, H], "linear"),
                  (p + "self_attn.kv_a_layernorm.weight", [kvl], "norm"),
                  (p + "self_attn.kv_b_proj.weight", [heads * (nope + vd), kvl], "linear"),
                  (p + "self_attn.o_proj.weight", [H, heads * vd], "linear"),
                  (p + "post_attention_layernorm.weight", [H], "norm")]
            if i == 0:
                t += [(p + "mlp.gate_proj.weight", [I, H], "linear"), (p + "mlp.up_proj.weight", [I, H], "linear"),
                      (p + "mlp.down_proj.weight", [H, I], "linear")]
            else:
                t += [(p + "mlp.gate.weight", [E, H], "linear"),
                      (p + "mlp.gate.e_score_correction_bias", [E], "bias")]
                for e in range(E):
                    x = p + f"mlp.experts.{e}."
                    t += [(x + "gate_proj.weight", [mI, H], "linear"), (x + "up_proj.weight", [mI, H], "linear"),
                          (x + "down_proj.weight", [H, mI], "linear")]
                t += [(p + "mlp.shared_experts.gate_proj.weight", [mI, H], "linear"),
                      (p + "mlp.shared_experts.up_proj.weight", [mI, H], "linear"),
                      (p + "mlp.shared_experts.down_proj.weight", [H, mI], "linear")]
        cfg = {"architectures": ["DeepseekV3ForCausalLM"], "first_k_dense_replace": 1, "hidden_size": H,
               "intermediate_size": I, "kv_lora_rank": kvl, "model_type": "deepseek_v3",
               "moe_intermediate_size": mI, "n_routed_experts": E, "n_shared_experts": 1,
               "num_attention_heads": heads, "num_experts_per_tok": 2, "num_hidden_layers": L,
               "q_lora_rank": ql, "qk_nope_head_dim": nope, "qk_rope_head_dim": rope, "v_head_dim": vd,
               "rms_norm_eps": 1e-06, "tie_word_embeddings": False, "vocab_size": V}
    elif arch == "qwen3_moe":
        mI = odd(128) if odd_shapes else 128
        heads, kvh, hd, E = 4, 2, 64, 4
        for i in range(L):
            p = f"model.layers.{i}."
            t += [(p + "input_layernorm.weight", [H], "norm"),
                  (p + "self_attn.q_proj.weight", [heads * hd, H], "linear"),
                  (p + "self_attn.k_proj.weight", [kvh * hd, H], "linear"),
                  (p + "self_attn.v_proj.weight", [kvh * hd, H], "linear"),
                  (p + "self_attn.o_proj.weight", [H, heads * hd], "linear"),
                  (p + "self_attn.q_norm.weight", [hd], "norm"),
                  (p + "self_attn.k_norm.weight", [hd], "norm"),
                  (p + "post_attention_layernorm.weight", [H], "norm"),
                  (p + "mlp.gate.weight", [E, H], "linear")]
            for e in range(E):
                x = p + f"mlp.experts.{e}."
                t += [(x + "gate_proj.weight", [mI, H], "linear"), (x + "up_proj.weight", [mI, H], "linear"),
                      (x + "down_proj.weight", [H, mI], "linear")]
        cfg = {"architectures": ["Qwen3MoeForCausalLM"], "head_dim": hd, "hidden_size": H,
               "intermediate_size": mI * 8, "model_type": "qwen3_moe", "moe_intermediate_size": mI,
               "num_attention_heads": heads, "num_experts": E, "num_experts_per_tok": 2,
               "num_hidden_layers": L, "num_key_value_heads": kvh, "rms_norm_eps": 1e-06,
               "tie_word_embeddings": False, "vocab_size": V}
    elif arch == "qwen3_5_moe":
        # Fused expert tensors (no ".weight" suffix): Quark's template converters split them.
        mI = odd(128) if odd_shapes else 128
        heads, kvh, hd, E = 4, 2, 64, 4
        for i in range(L):
            p = f"model.layers.{i}."
            t += [(p + "input_layernorm.weight", [H], "norm"),
                  (p + "self_attn.q_proj.weight", [heads * hd, H], "linear"),
                  (p + "self_attn.k_proj.weight", [kvh * hd, H], "linear"),
                  (p + "self_attn.v_proj.weight", [kvh * hd, H], "linear"),
                  (p + "self_attn.o_proj.weight", [H, heads * hd], "linear"),
                  (p + "post_attention_layernorm.weight", [H], "norm"),
                  (p + "mlp.gate.weight", [E, H], "linear"),
                  (p + "mlp.experts.gate_up_proj", [E, 2 * mI, H], "linear3"),
                  (p + "mlp.experts.down_proj", [E, H, mI], "linear3"),
                  (p + "mlp.shared_expert.gate_proj.weight", [mI, H], "linear"),
                  (p + "mlp.shared_expert.up_proj.weight", [mI, H], "linear"),
                  (p + "mlp.shared_expert.down_proj.weight", [H, mI], "linear"),
                  (p + "mlp.shared_expert_gate.weight", [1, H], "linear")]
        cfg = {"architectures": ["Qwen3_5MoeForCausalLM"], "head_dim": hd, "hidden_size": H,
               "model_type": "qwen3_5_moe", "moe_intermediate_size": mI, "num_attention_heads": heads,
               "num_experts": E, "num_experts_per_tok": 2, "num_hidden_layers": L, "num_key_value_heads": kvh,
               "rms_norm_eps": 1e-06, "tie_word_embeddings": False, "vocab_size": V}
    else:
        raise SystemExit(f"make_ckpt: unknown arch {arch}")
    t += [("model.norm.weight", [H], "norm"), ("lm_head.weight", [V, H], "linear")]
    return cfg, t


def values(name: str, shape, kind: str, seed: int) -> np.ndarray:
    h = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(h)
    if kind == "norm":
        return (1.0 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
    if kind == "bias":
        return (0.01 * rng.standard_normal(shape)).astype(np.float32)
    if kind == "embedding":
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)
    if kind == "linear3":
        return np.stack([values(f"{name}[{e}]", shape[1:], "linear", seed) for e in range(shape[0])])
    out, inn = shape
    x = rng.standard_normal(shape) / np.sqrt(inn)
    x *= np.exp(rng.uniform(-1.0, 1.0, (out, 1)))
    k = rng.integers(0, x.size, max(1, x.size // 2000))
    x.flat[k] *= rng.uniform(10, 60, k.size)
    x[rng.integers(0, out)] = 0.0
    return x.astype(np.float32)


def encode(x: np.ndarray, dtype: str) -> bytes:
    if dtype == "bf16":
        u = x.view(np.uint32).astype(np.uint64)
        return (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF).astype("<u2").tobytes()
    if dtype == "fp16":
        return x.astype("<f2").tobytes()
    return x.astype("<f4").tobytes()


def write_shard(path: str, items) -> None:
    header, off = {}, 0
    for name, dt, shape, b in items:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for *_, b in items:
            f.write(b)


FP8_BLOCK = 128


def fp8_block_quantize(x: np.ndarray):
    """DeepSeek-style source: E4M3 codes and F32 weight_scale_inv [ceil(out/128), ceil(in/128)]
    with W ~= fp8(q) * scale_inv (amax/448 per 128x128 block)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import spec_ref

    out, inn = x.shape
    rb, cb = -(-out // FP8_BLOCK), -(-inn // FP8_BLOCK)
    s = np.zeros((rb, cb), dtype=np.float32)
    q = np.zeros(x.shape, dtype=np.uint8)
    for i in range(rb):
        for j in range(cb):
            blk = x[i * FP8_BLOCK:(i + 1) * FP8_BLOCK, j * FP8_BLOCK:(j + 1) * FP8_BLOCK]
            a = np.float32(np.abs(blk).max())
            sc = np.float32(a / np.float32(448)) if a > 0 else np.float32(1.0)
            s[i, j] = sc
            y = np.clip((blk / sc).astype(np.float32), -448, 448)
            q[i * FP8_BLOCK:(i + 1) * FP8_BLOCK, j * FP8_BLOCK:(j + 1) * FP8_BLOCK] = spec_ref.to_fp8_e4m3fn(y)
    return q, s


def make(arch: str, dtype: str, out: str, odd_shapes: bool = False, shard_size: int = 1_500_000, seed: int = 0,
         fp8_source: bool = False):
    cfg, tensors = design(arch, odd_shapes)
    cfg["torch_dtype"] = DT[dtype][1]
    if fp8_source:
        cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                      "weight_block_size": [FP8_BLOCK, FP8_BLOCK]}
    os.makedirs(out, exist_ok=False)
    shards, cur, cur_bytes = [], [], 0
    pending_scale = None  # one scale_inv is written into the next shard (cross-shard case)
    for name, shape, kind in tensors:
        x = values(name, shape, kind, seed)
        extra = []
        if kind == "bias":
            item = (name, "F32", shape, x.astype("<f4").tobytes())
        elif (fp8_source and kind == "linear" and not name.startswith("lm_head")
              and not name.endswith("mlp.gate.weight")):
            q, sc = fp8_block_quantize(x)
            item = (name, "F8_E4M3", shape, q.tobytes())
            extra = [(name + "_scale_inv", "F32", list(sc.shape), sc.astype("<f4").tobytes())]
        else:
            item = (name, DT[dtype][0], shape, encode(x, dtype))
        if cur and cur_bytes + len(item[3]) > shard_size:
            shards.append(cur)
            cur, cur_bytes = [], 0
            if pending_scale is not None:
                cur.append(pending_scale)
                cur_bytes += len(pending_scale[3])
                pending_scale = "done"
        cur.append(item)
        cur_bytes += len(item[3])
        if extra and pending_scale is None and len(shards) == 0:
            pending_scale = extra[0]
        else:
            cur += extra
    if pending_scale not in (None, "done"):
        cur.append(pending_scale)
    shards.append(cur)
    n = len(shards)
    weight_map, total = {}, 0
    for i, items in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        write_shard(os.path.join(out, fn), items)
        for name, _, _, b in items:
            weight_map[name] = fn
            total += len(b)
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2}, f, indent=2)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"model_max_length": 4096, "note": "synthetic"}, f, indent=2)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(f"Synthetic {arch} checkpoint (tests/conformance/make_ckpt.py, seed {seed}).\n")
    return n, total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", required=True)
    p.add_argument("--dtype", required=True, choices=sorted(DT))
    p.add_argument("--out", required=True)
    p.add_argument("--odd-shapes", action="store_true")
    p.add_argument("--shard-size", type=int, default=1_500_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fp8-source", action="store_true",
                   help="DeepSeek-style block-FP8 source (weight_scale_inv, quant_method fp8); one scale_inv "
                        "is stored in the shard after its weight's")
    a = p.parse_args(argv)
    n, total = make(a.arch, a.dtype, a.out, a.odd_shapes, a.shard_size, a.seed, a.fp8_source)
    print(f"make_ckpt: {a.arch} {a.dtype}{' odd' if a.odd_shapes else ''}: {n} shards, {total} tensor bytes -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
