"""The golden vectors of formats.md §12.7 and the discriminating items of §12.9, as data.

Owns: inputs (bf16 bit patterns, D = BF16, §12.6) and the expected output tensors per scheme,
transcribed from formats.md; no computation beyond building the input rows the text defines by
formula. Must not import torch or quark.
"""
from __future__ import annotations

import struct


def bf16(x: float) -> int:
    """bf16 bits of a value that must be exactly representable (checked)."""
    (u,) = struct.unpack("<I", struct.pack("<f", x))
    if u & 0xFFFF:
        raise ValueError(f"{x} is not an exact bf16 value")
    return u >> 16


def hx(s: str) -> list[int]:
    return [int(t, 16) for t in s.split()]


def f32b(*words: str) -> bytes:
    return b"".join(struct.pack("<I", int(w, 16)) for w in words)


def i32b(*words: str) -> bytes:
    return f32b(*words)


def u8b(s: str) -> bytes:
    return bytes(hx(s))


NEG0 = 0x8000

# Each golden: name, schemes it applies to, input rows (bf16 bits), expected {suffix: (dtype, shape, bytes)}
# (suffix "" is the `.weight` tensor itself). Quark drops uint4 zero points ([DIFF 4]); the
# expected zero points are kept under "zp" for the record.
GOLDENS: list[dict] = []

G1_ROW = hx("3F88 BF88 3C16 3C0D 3742 0000 8000 B580")
GOLDENS.append(dict(
    name="G1", schemes=["fp8"], rows=[G1_ROW],
    expect={"": ("F8_E4M3", [1, 8], u8b("7E FE 48 47 02 00 80 80")), "_scale": ("F32", [], f32b("3B1B6DB7"))}))
GOLDENS.append(dict(
    name="G1b", schemes=["fp8"], rows=[hx("4040 3F80 BF00")],
    expect={"": ("F8_E4M3", [1, 3], u8b("7E 71 E9")), "_scale": ("F32", [], f32b("3BDB6DB7"))}))
GOLDENS.append(dict(
    name="G2", schemes=["ptpc_fp8"],
    rows=[G1_ROW, hx("4040 BFC0 3F40 3C40 3B80 C040 0000 3F80"), hx("0000 8000 0000 0000 0000 0000 0000 0000")],
    expect={"": ("F8_E4M3", [3, 8], u8b("7E FE 48 47 02 00 80 80 7E F6 6E 3E 31 FE 00 71 00 80 00 00 00 00 00 00")),
            "_scale": ("F32", [3], f32b("3B1B6DB7", "3BDB6DB8", "34000000"))}))
GOLDENS.append(dict(
    name="G3", schemes=["int8"], rows=[hx("3F7F BF7F 3C40 3CA0 BC40 0000 3F00 3A80")],
    expect={"": ("I8", [1, 8], u8b("7F 80 02 02 FE 00 40 00")), "_scale": ("F32", [], f32b("3C000000"))}))
GOLDENS.append(dict(
    name="G3b", schemes=["int8"], rows=[hx("4000 3F80")],
    expect={"": ("I8", [1, 2], u8b("7F 40")), "_scale": ("F32", [], f32b("3C810000"))}))

G4_WORDS = ("00000098 00000099 0000009A 000000AA 000000AA 000000BB 000000BC 000000CC 000000CC 000000DD "
            "000000DE 000000EE 000000EE 000000FF 000000F0 00000000 00000000 00000001 00000012 00000012 "
            "00000022 00000023 00000034 00000034 00000044 00000045 00000056 00000056 00000066 00000067 "
            "00000077 00000070").split()
GOLDENS.append(dict(
    name="G4", schemes=["int4_wo_32"],
    rows=[[bf16((j - 15) / 16) for j in range(31)] + [NEG0], [bf16((j - 16) / 16) for j in range(32)]],
    expect={"": ("I32", [32, 1], i32b(*G4_WORDS)), "_scale": ("F32", [2, 1], f32b("3E000000", "3E090000"))}))
GOLDENS.append(dict(
    name="G5", schemes=["int4_wo_per_channel"],
    rows=[[bf16((2 * j - 15) / 16) for j in range(16)], [0] * 15 + [NEG0]],
    expect={"": ("I32", [2, 2], i32b("0EECCAA8", "76644220", "00000000", "00000000")),
            "_scale": ("F32", [2], f32b("3E000000", "34000000"))}))
G6_WORDS = ("00000000 00000010 00000011 00000021 00000022 00000032 00000033 00000043 00000044 00000054 "
            "00000055 00000065 00000066 00000076 00000077 00000087 00000088 00000098 00000099 000000A9 "
            "000000AA 000000AA 000000BB 000000BB 000000CC 000000CC 000000DD 000000DD 000000EE 000000EE "
            "000000FF 000000FF").split()
GOLDENS.append(dict(
    name="G6", schemes=["uint4_wo_32"],
    rows=[[bf16(j / 16) for j in range(32)], [bf16((j - 20) / 8) for j in range(32)]],
    expect={"": ("I32", [32, 1], i32b(*G6_WORDS)), "_scale": ("F32", [2, 1], f32b("3E040000", "3E840000"))},
    zp=[0, 10]))
GOLDENS.append(dict(
    name="G7", schemes=["uint4_wo_per_channel"],
    rows=[[bf16(-(j + 1) / 16) for j in range(16)], [0] * 16],
    expect={"": ("I32", [2, 2], i32b("889ABCDE", "01234567", "00000000", "00000000")),
            "_scale": ("F32", [2], f32b("3D890000", "34000000"))},
    zp=[15, 0]))

G8_R0B0 = hx("3E80 3F40 3FA0 3FE0 4020 4060 40A0 40C0 BE80 BF40 BFA0 BFE0 C020 C060 C0A0 C0C0 "
             "0000 8000 3F00 3F80 3FC0 4000 4040 4080 3E84 40B0 4090 3C00 BC00 3E00 3EC0 3F20")
G8_R0B1 = [bf16(7 * t / 16) for t in range(-16, 16)]
G8_R1B0 = [0] * 31 + [NEG0]
G8_R1B1 = [bf16(t * 2.0**-129) for t in range(-16, 16)]
G8_W = ("20 42 64 76 A0 CA EC FE 00 21 43 65 71 06 00 11 DE DD CD CC BC AB 9A 09 00 11 22 33 44 44 55 55 "
        "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 EE DE DD CD CC BB AA 99 10 21 32 43 44 55 55 66")
G8 = dict(name="G8", schemes=["mxfp4", "mxfp4_weight_only", "mxfp4_fp8", "mxfp4_mxfp6_e2m3"],
          rows=[G8_R0B0 + G8_R0B1, G8_R1B0 + G8_R1B1],
          expect={"": ("U8", [2, 32], u8b(G8_W)), "_scale": ("U8", [2, 2], bytes([127, 128, 1, 1]))})
GOLDENS.append(G8)
GOLDENS.append(dict(
    name="G9", schemes=["mxfp6_e2m3"],
    rows=[hx("40F0 C0F0 3D80 3E40 3F88 4008 4018 4088 4098 40E8 BD00 0000 8000 3E00 3F60 3F80 "
             "3FF0 4070 40C0 BE40 C018 C098 3F00 3EA0 3EE0 40B0 40D0 4048 3FB8 3C00 BF88 4000")],
    expect={"": ("U8", [1, 24], u8b("DF 0F 08 08 24 61 9A 07 00 40 70 20 CF C5 89 B2 4E 08 C4 D6 51 0C 80 42")),
            "_scale": ("U8", [1, 1], bytes([127]))}))
GOLDENS.append(dict(
    name="G10", schemes=["mxfp6_e3m2"],
    rows=[hx("41E0 C1E0 3D00 3DC0 3F90 3FB0 4190 41B0 41D0 C1B0 0000 8000 BC80 3D80 3E40 3E80 "
             "4040 40A0 4110 4130 3F38 4010 4030 40D0 4150 3F00 3F80 4080 4180 BFB0 BDC0 41D8")],
    expect={"": ("U8", [1, 24], u8b("DF 0F 08 8C C3 79 9E 0F 00 40 30 10 52 85 69 0A 24 59 1A C2 50 9C 2B 7E")),
            "_scale": ("U8", [1, 1], bytes([127]))}))
GOLDENS.append(dict(
    name="G11", schemes=["int4_fp8"],
    rows=[hx("3F88 BF88 3C16 3C0D 3F00 BE80 3E00 0000 8000 3F40 3EA0 BF30 3D80 3D00 3F80 BF00"),
          [bf16((j - 8) / 64) for j in range(16)]],
    expect={"": ("I32", [2, 2], i32b("0E081307", "D0B57020", "FDB9ECA9", "75316420")),
            "_scale": ("F32", [], f32b("3B1B6DB7")),
            "_scale_2": ("F32", [2], f32b("426EEEF0", "40DDDDDF"))}))


# §12.9: (item, golden, suffix, element slice of that tensor, expected, {alternative: value}, statement)
# Values are written as formats.md writes them: F32 as 8-hex-digit words, bytes as 2-digit hex.
TC_CHECKS = [
    ("TC1", "G1", "", (2, 4), "48 47", {"fp32 scale + bf16 quotient": "47 46", "pure fp32": "47 47"},
     "fp8 per-tensor, bf16 source: scale rounded to bf16, fp32 division, quotient rounded to bf16"),
    ("TC2", "G2", "", (2, 4), "48 47", {"fp32 scale + bf16 quotient": "47 46", "pure fp32": "47 47"},
     "ptpc_fp8, bf16 source: same as TC1 with the row scale (row 0)"),
    ("TC3", "G3b", "_scale", (0, 1), "3C810000", {"fp32 kept": "3C808081"},
     "int8 scale rounded to the source dtype (bf16) before being stored as F32"),
    ("TC3", "G4", "_scale", (1, 2), "3E090000", {"fp32 kept": "3E088889"},
     "int4 per-group scale (row 1) rounded to bf16"),
    ("TC3", "G6", "_scale", (0, 2), "3E040000 3E840000", {"fp32 kept": "3E044445 3E844445"},
     "uint4 per-group scales rounded to bf16"),
    ("TC3", "G7", "_scale", (0, 1), "3D890000", {"fp32 kept": "3D888889"},
     "uint4 per-channel scale (row 0) rounded to bf16"),
    ("TC4", "G1b", "_scale", (0, 1), "3BDB6DB7", {"swapped (x R(448))": "3BDB6DB8"},
     "per-tensor fp8 scale is a true fp32 division amax/448"),
    ("TC4", "G2", "_scale", (1, 2), "3BDB6DB8", {"swapped (true division)": "3BDB6DB7"},
     "per-channel fp8 scale (row 1) is amax x RN32(1/448)"),
    ("TC4", "G11", "_scale_2", (0, 2), "426EEEF0 40DDDDDF", {"swapped (true division)": "426EEEEF 40DDDDDE"},
     "int4_fp8 stage-2 per-row scale is amax x RN32(1/7.5)"),
    ("TC6", "G8", "", (48, 64), "EE DE DD CD CC BB AA 99 10 21 32 43 44 55 55 66",
     {"exact 2^-127": "EE DE DD CC CC AB AA 09 00 21 22 43 44 54 55 66"},
     "MX block with k = -127 divided by 0x003FFFFF (GPU exp2(-127)); G8 row 1 bytes 16..31"),
]
