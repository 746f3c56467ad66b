"""formats.md §5/§10/§12 written out in numpy: the rules *as written* (the CUDA-reference rules,
[TO CONFIRM] items applied as stated), independent of PyTorch and Quark.

Owns: one function per scheme family mapping a 2-D weight (given as its raw bits and dtype) to the
tensors Quark's F2F writes for it ({suffix: (safetensors dtype, shape, bytes)}), plus the uint4 zero
point Quark drops. Must not import torch or quark: it is the second opinion golden_tc.py uses for
random tensors. Every float32 operation is one IEEE operation in numpy (no FMA, no FTZ).
"""
from __future__ import annotations

import numpy as np

EPS = np.float32(2.0**-23)
F32 = np.float32


# ---------------------------------------------------------------- dtype helpers (§12.2)
def bf16_bits_to_f32(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF
    nan = np.isnan(x)
    r = np.where(nan, 0x7FC0, r)
    return r.astype(np.uint16)


def round_d(x: np.ndarray, d: str) -> np.ndarray:
    """fp32 -> D -> fp32 (round to nearest even); identity for f32."""
    x = np.asarray(x, dtype=np.float32)
    if d == "bf16":
        return bf16_bits_to_f32(f32_to_bf16_bits(x))
    if d == "f16":
        return x.astype(np.float16).astype(np.float32)
    return x


def input_to_f32(raw: np.ndarray, d: str) -> np.ndarray:
    """raw: uint16 bits (bf16/f16) or float32 values."""
    if d == "bf16":
        return bf16_bits_to_f32(raw)
    if d == "f16":
        return raw.view(np.float16).astype(np.float32)
    return raw.astype(np.float32)


def rcp(c: float) -> np.float32:
    """R(c) = RN32(1/c) for a constant c (§5.0)."""
    return F32(1.0) / F32(c)


def rne(x: np.ndarray) -> np.ndarray:
    return np.rint(x)  # numpy rint: round half to even


# ---------------------------------------------------------------- small-float tables (§12.3/§12.4)
def _table(ebits: int, mbits: int, bias: int, n_codes: int) -> np.ndarray:
    vals = []
    for c in range(n_codes):
        e, m = c >> mbits, c & ((1 << mbits) - 1)
        if e == 0:
            vals.append(m * 2.0 ** (1 - bias - mbits))
        else:
            vals.append((1 + m / 2**mbits) * 2.0 ** (e - bias))
    return np.array(vals, dtype=np.float64)


FP8_VALUES = _table(4, 3, 7, 127)  # codes 0x00..0x7E (0x7F is NaN)
FP4_VALUES = _table(2, 1, 1, 8)
E2M3_VALUES = _table(2, 3, 1, 32)
E3M2_VALUES = _table(3, 2, 3, 32)


def nearest_code(a: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Index of the nearest table value to |a| (a >= 0), ties to the even index, saturating."""
    a = np.asarray(a, dtype=np.float64)
    hi = np.clip(np.searchsorted(table, a, side="left"), 0, len(table) - 1)
    lo = np.clip(hi - 1, 0, len(table) - 1)
    dlo = a - table[lo]
    dhi = table[hi] - a
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    idx = np.where(pick_hi, hi, lo)
    idx = np.where(a >= table[-1], len(table) - 1, idx)
    return idx.astype(np.uint8)


def to_fp8_e4m3fn(y: np.ndarray) -> np.ndarray:
    """§12.3 (input already clamped to ±448): sign kept for -0 and negative underflow."""
    y = np.asarray(y, dtype=np.float32)
    neg = np.signbit(y)
    code = nearest_code(np.abs(y), FP8_VALUES)
    return (code | np.where(neg, 0x80, 0)).astype(np.uint8)


def fp8_value(code: np.ndarray) -> np.ndarray:
    v = FP8_VALUES[code & 0x7F].astype(np.float32)
    return np.where(code & 0x80, -v, v).astype(np.float32)


# ---------------------------------------------------------------- schemes
def _f32_bytes(x) -> bytes:
    return np.ascontiguousarray(x, dtype="<f4").tobytes()


class SpecError(ValueError):
    """formats.md says shardquant reports an error here (a [DIFF] case); Quark writes something."""


def fp8_elements(w: np.ndarray, s: np.ndarray, d: str) -> np.ndarray:
    """§5.2 step 3; s broadcasts against w."""
    if d == "f32":
        y = w / s
    else:
        s_d = round_d(s, d)
        if np.any(s_d == 0):
            raise SpecError(f"scale rounds to 0 in {d} (§5.2: error [DIFF 15]; Quark writes NaN/saturated codes)")
        y = round_d(w / s_d, d)
    y = np.clip(y, F32(-448), F32(448))
    return to_fp8_e4m3fn(y)


def amax(x: np.ndarray, axis=None) -> np.ndarray:
    return np.max(np.abs(x), axis=axis).astype(np.float32)


def q_fp8(w: np.ndarray, d: str):
    a = amax(w)
    s = F32(a) / F32(448)
    s = EPS if s == 0 else F32(s)
    q = fp8_elements(w, s, d)
    return {"": ("F8_E4M3", list(w.shape), q.tobytes()), "_scale": ("F32", [], _f32_bytes(s))}, q, s


def q_ptpc_fp8(w: np.ndarray, d: str):
    a = amax(w.reshape(w.shape[0], -1), axis=1)
    s = (a * rcp(448)).astype(np.float32)
    s = np.where(s == 0, EPS, s).astype(np.float32)
    q = fp8_elements(w, s.reshape((-1,) + (1,) * (w.ndim - 1)), d)
    return {"": ("F8_E4M3", list(w.shape), q.tobytes()), "_scale": ("F32", [w.shape[0]], _f32_bytes(s))}


def q_int8(w: np.ndarray, d: str):
    a = amax(w)
    s = np.maximum(round_d(F32(a) / F32(127.5), d), EPS).astype(np.float32)
    inv = F32(1) / s
    q = np.clip(rne(w * inv), -128, 127).astype(np.int8)
    return {"": ("I8", list(w.shape), q.tobytes()), "_scale": ("F32", [], _f32_bytes(s))}


def _units(w: np.ndarray, g: int | None) -> np.ndarray:
    """[out, n_units, unit_len] view: groups of g along the row, or whole rows."""
    out, inn = w.shape
    return w.reshape(out, 1, inn) if g is None else w.reshape(out, inn // g, g)


def int4_codes(w: np.ndarray, d: str, g: int | None):
    u = _units(w, g)
    a = amax(u, axis=2)
    s = np.maximum(round_d((a * rcp(7.5)).astype(np.float32), d), EPS).astype(np.float32)
    inv = (F32(1) / s).astype(np.float32)
    q = np.clip(rne((u * inv[:, :, None]).astype(np.float32)), -8, 7).astype(np.int32)
    return q.reshape(w.shape), s


def uint4_codes(w: np.ndarray, d: str, g: int | None):
    u = _units(w, g)
    mn = np.minimum(u.min(axis=2), 0).astype(np.float32)
    mx = np.maximum(u.max(axis=2), 0).astype(np.float32)
    dd = round_d((mx - mn).astype(np.float32), d)
    s = np.maximum(round_d((dd * rcp(15)).astype(np.float32), d), EPS).astype(np.float32)
    t = round_d((mn / s).astype(np.float32), d)
    zp = np.clip(-rne(t), 0, 15).astype(np.int32)
    inv = (F32(1) / s).astype(np.float32)
    y = (u * inv[:, :, None]).astype(np.float32)
    y = (y + zp[:, :, None].astype(np.float32)).astype(np.float32)
    q = np.clip(rne(y), 0, 15).astype(np.int32)
    return q.reshape(w.shape), s, zp


def pack_int4(q: np.ndarray, order=(0, 1, 2, 3, 4, 5, 6, 7)) -> np.ndarray:
    """Packs the last dim of q (rows x n) into I32 words (§5.6)."""
    rows, n = q.shape
    nw = (n + 7) // 8
    padded = np.zeros((rows, nw * 8), dtype=np.uint32)
    padded[:, :n] = q.astype(np.int64) & 0xF
    padded = padded.reshape(rows, nw, 8)
    words = np.zeros((rows, nw), dtype=np.uint32)
    for nib, src in enumerate(order):
        words |= padded[:, :, src] << np.uint32(4 * nib)
    return words.view(np.int32)


def q_int4(w: np.ndarray, d: str, g: int | None):
    q, s = int4_codes(w, d, g)
    if g is None:
        packed = pack_int4(q)
        scale = s.reshape(-1)
    else:
        packed = pack_int4(q.T.copy())
        scale = s
    return {"": ("I32", list(packed.shape), packed.tobytes()), "_scale": ("F32", list(scale.shape), _f32_bytes(scale))}


def q_uint4(w: np.ndarray, d: str, g: int | None):
    q, s, zp = uint4_codes(w, d, g)
    if g is None:
        packed = pack_int4(q)
        scale, zp = s.reshape(-1), zp.reshape(-1)
    else:
        packed = pack_int4(q.T.copy())
        scale = s
    out = {"": ("I32", list(packed.shape), packed.tobytes()), "_scale": ("F32", list(scale.shape), _f32_bytes(scale))}
    out["_zero_point"] = ("I32", list(zp.shape), np.ascontiguousarray(zp, dtype="<i4").tobytes())
    return out


MX_FORMATS = {  # name: (ebits, mbits, emax, table)
    "fp4": (2, 1, 2, FP4_VALUES),
    "fp6_e2m3": (2, 3, 2, E2M3_VALUES),
    "fp6_e3m2": (3, 2, 4, E3M2_VALUES),
}
S_K_MINUS_127 = np.array([0x003FFFFF], dtype=np.uint32).view(np.float32)[0]  # TC6


def q_mx(w: np.ndarray, d: str, fmt: str):
    ebits, mbits, emax, table = MX_FORMATS[fmt]
    out_rows, inn = w.shape
    nb = (inn + 31) // 32
    padded = np.zeros((out_rows, nb * 32), dtype=np.float32)
    padded[:, :inn] = w
    blocks = padded.reshape(out_rows, nb, 32)
    a = amax(blocks, axis=2)
    b = a.view(np.uint32).astype(np.uint64)
    b2 = ((b + (1 << (22 - mbits))) & 0xFF800000).astype(np.uint32)
    r = b2.view(np.float32)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(r.astype(np.float64)))
    k = np.clip(e - emax, -127, 127)
    k = np.where(a == 0, -127, k).astype(np.int32)
    s = np.where(k == -127, S_K_MINUS_127, np.ldexp(np.float32(1), np.maximum(k, -126))).astype(np.float32)
    byte = (np.maximum(k, -126) + 127).astype(np.uint8)
    y = (blocks / s[:, :, None]).astype(np.float32)
    code = nearest_code(np.abs(y), table)
    nz = table[code] != 0  # zero results are +0
    sign = np.where(np.signbit(y) & nz, 1 << (ebits + mbits), 0).astype(np.uint8)
    codes = (code | sign).reshape(out_rows, nb * 32)[:, :inn]
    if fmt == "fp4":
        c = codes.reshape(out_rows, inn // 2, 2).astype(np.uint8)
        packed = (c[:, :, 0] | (c[:, :, 1] << 4)).astype(np.uint8)
    else:
        flat = codes.reshape(-1, 4).astype(np.uint32)
        word = flat[:, 0] | (flat[:, 1] << 6) | (flat[:, 2] << 12) | (flat[:, 3] << 18)
        packed = np.stack([word & 0xFF, (word >> 8) & 0xFF, (word >> 16) & 0xFF], axis=1).astype(np.uint8)
        packed = packed.reshape(out_rows, 3 * inn // 4)
    return {"": ("U8", list(packed.shape), packed.tobytes()), "_scale": ("U8", [out_rows, nb], byte.tobytes())}


def q_int4_fp8(w: np.ndarray, d: str):
    _, c1, s1 = q_fp8(w, d)
    f = fp8_value(c1)
    a = amax(f, axis=1)
    s2 = np.maximum((a * rcp(7.5)).astype(np.float32), EPS).astype(np.float32)
    inv = (F32(1) / s2).astype(np.float32)
    q = np.clip(rne((f * inv[:, None]).astype(np.float32)), -8, 7).astype(np.int32)
    packed = pack_int4(q, order=(0, 2, 4, 6, 1, 3, 5, 7))
    return {
        "": ("I32", list(packed.shape), packed.tobytes()),
        "_scale": ("F32", [], _f32_bytes(s1)),
        "_scale_2": ("F32", [w.shape[0]], _f32_bytes(s2)),
    }


def quantize(scheme: str, w: np.ndarray, d: str) -> dict:
    """w: fp32 values (exact values of D). Returns {suffix: (dtype, shape, bytes)}."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    if scheme == "fp8":
        return q_fp8(w, d)[0]
    if scheme == "ptpc_fp8":
        return q_ptpc_fp8(w, d)
    if scheme == "int8":
        return q_int8(w, d)
    if scheme.startswith("int4_wo_") or scheme == "int4_wa_64":
        tail = scheme.rsplit("_", 1)[1]
        return q_int4(w, d, None if tail == "channel" else int(tail))
    if scheme.startswith("uint4_wo_"):
        tail = scheme.rsplit("_", 1)[1]
        return q_uint4(w, d, None if tail == "channel" else int(tail))
    if scheme in ("mxfp4", "mxfp4_weight_only", "mxfp4_fp8", "mxfp4_mxfp6_e2m3"):
        return q_mx(w, d, "fp4")
    if scheme == "mxfp6_e2m3":
        return q_mx(w, d, "fp6_e2m3")
    if scheme == "mxfp6_e3m2":
        return q_mx(w, d, "fp6_e3m2")
    if scheme == "int4_fp8":
        return q_int4_fp8(w, d)
    raise ValueError(f"spec_ref: unknown scheme {scheme}")


SCHEMES = ["int4_wo_32", "int4_wo_64", "int4_wo_128", "int4_wo_per_channel", "int4_wa_64", "uint4_wo_32",
           "uint4_wo_64", "uint4_wo_128", "uint4_wo_per_channel", "int8", "fp8", "ptpc_fp8", "mxfp4",
           "mxfp4_weight_only", "mxfp6_e2m3", "mxfp6_e3m2", "mxfp4_mxfp6_e2m3", "mxfp4_fp8", "int4_fp8"]
