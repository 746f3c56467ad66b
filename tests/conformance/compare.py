#!/usr/bin/env python3
"""Compare two quantized checkpoint directories the way formats.md §1.3 defines "the same output".

Owns: a raw safetensors reader (no torch needed), the per-tensor byte comparison with the first
differing element decoded, and the config.json quantization_config comparison that ignores
`version` and the [DIFF] items of formats.md §11. Must not depend on shardquant or Quark.

Checked, per output directory pair (A = reference, usually Quark; B = candidate, shardquant):
  - shard files (relative paths; Quark writes flat, so B's paths are compared by basename when
    A is flat [DIFF 2]);
  - tensor names per shard, dtype string, shape, data bytes;
    B-only tensors named `*.weight_zero_point` are allowed [DIFF 4];
  - model.safetensors.index.json weight_map (metadata.total_size ignored [DIFF 3]);
  - config.json: equal as JSON values except quantization_config.version [§6.2];
  - side files (anything else): byte-identical.
Prints one line per difference (capped) and a summary line:
  SUMMARY <label> tensors_identical=<n>/<total> config=<ok|DIFF> files=<ok|DIFF>
Exit status 0 when everything required is equal, 1 otherwise.

REF_DIR may also be a manifest (JSON written by `compare.py --manifest DIR OUT.json`): per tensor its
shard, dtype, shape and SHA-256, plus config.json, the index weight_map and side-file hashes. Then
differing tensors are named but no element can be shown. Manifests carry a reference made elsewhere
(e.g. Quark on the GPU machine) in a few kilobytes.

A reference bundle (several manifests, e.g. reference/quark-0.13-cuda.json.gz) is named
BUNDLE#CHECKPOINT/SCHEME.

Usage: compare.py REF_DIR|REF_MANIFEST.json|BUNDLE#CKPT/SCHEME CAND_DIR [--label NAME] [--max-report N]
                  [--json OUT.json]
       compare.py --manifest DIR OUT.json
       compare.py --status REF      prints "error" when REF records a refusal (QUARK_ERROR.txt,
                                    SQ_ERROR.txt or a manifest's "error"), "missing" or "ok"
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys

DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "I16": 16, "U16": 16, "I32": 32, "U32": 32, "I64": 64, "U64": 64,
    "F16": 16, "BF16": 16, "F32": 32, "F64": 64, "C64": 64, "F8_E4M3": 8, "F8_E5M2": 8,
    "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


def read_safetensors(path: str) -> tuple[dict, dict]:
    """Returns ({name: (dtype, shape, bytes)}, metadata)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack_from("<Q", data, 0)
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, e in header.items():
        b, en = e["data_offsets"]
        out[name] = (e["dtype"], list(e["shape"]), data[base + b:base + en])
    return out, meta


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _f8e4m3(b: int) -> float:
    s = -1.0 if b & 0x80 else 1.0
    e, m = (b >> 3) & 0xF, b & 7
    if e == 15 and m == 7:
        return float("nan")
    return s * (m * 2.0**-9 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7))


def element(dtype: str, raw: bytes, i: int) -> str:
    """Decodes element i (hex bits and value)."""
    if dtype in ("F32",):
        (u,) = struct.unpack_from("<I", raw, 4 * i)
        (v,) = struct.unpack_from("<f", raw, 4 * i)
        return f"{u:08X}({v:.9g})"
    if dtype == "BF16":
        (u,) = struct.unpack_from("<H", raw, 2 * i)
        (v,) = struct.unpack("<f", struct.pack("<I", u << 16))
        return f"{u:04X}({v:.6g})"
    if dtype == "F16":
        (u,) = struct.unpack_from("<H", raw, 2 * i)
        (v,) = struct.unpack_from("<e", raw, 2 * i)
        return f"{u:04X}({v:.6g})"
    if dtype == "F8_E4M3":
        return f"{raw[i]:02X}({_f8e4m3(raw[i]):.6g})"
    if dtype in ("U8", "BOOL", "F8_E8M0", "F8_E5M2"):
        return f"{raw[i]:02X}({raw[i]})"
    if dtype == "I8":
        v = raw[i] - 256 if raw[i] > 127 else raw[i]
        return f"{raw[i]:02X}({v})"
    if dtype == "I32":
        (u,) = struct.unpack_from("<I", raw, 4 * i)
        nib = [(u >> (4 * k)) & 0xF for k in range(8)]
        return f"{u:08X}(nibbles lo->hi {' '.join(f'{x:X}' for x in nib)})"
    if dtype in ("U32", "I64", "U64", "I16", "U16", "F64"):
        fmt = {"U32": "<I", "I64": "<q", "U64": "<Q", "I16": "<h", "U16": "<H", "F64": "<d"}[dtype]
        (v,) = struct.unpack_from(fmt, raw, struct.calcsize(fmt) * i)
        return str(v)
    return f"byte[{i}]={raw[i]:02X}"


def first_diff(dtype: str, a: bytes, b: bytes) -> tuple[int, int]:
    """(first differing element index, number of differing elements); sub-byte dtypes by byte."""
    bits = DTYPE_BITS.get(dtype, 8)
    w = bits // 8 if bits >= 8 and bits % 8 == 0 else 1
    n = min(len(a), len(b)) // w
    first, count = -1, 0
    # Fast path: compare in chunks, then count elements inside differing chunks.
    chunk = 4096 * w
    for off in range(0, n * w, chunk):
        ca, cb = a[off:off + chunk], b[off:off + chunk]
        if ca == cb:
            continue
        for k in range(0, len(ca), w):
            if ca[k:k + w] != cb[k:k + w]:
                if first < 0:
                    first = (off + k) // w
                count += 1
    return first, count


def unravel(i: int, shape) -> list[int]:
    idx = []
    for s in reversed(shape):
        idx.append(i % s if s else 0)
        i = i // s if s else 0
    return list(reversed(idx))


# ---------------------------------------------------------------- directory scan
def shard_files(d: str) -> dict:
    """relative path -> absolute path of every *.safetensors below d."""
    out = {}
    for root, _, files in os.walk(d):
        for fn in files:
            if fn.endswith(".safetensors"):
                full = os.path.join(root, fn)
                out[os.path.relpath(full, d)] = full
    return out


# Files only shardquant writes and formats.md allows: its resume journal (§3.6, `--resume`).
CANDIDATE_ONLY_OK = {".shardquant-journal"}


def side_files(d: str) -> dict:
    out = {}
    for root, _, files in os.walk(d):
        for fn in files:
            full = os.path.join(root, fn)
            rel = os.path.relpath(full, d)
            if fn.endswith(".safetensors") or rel in ("config.json", "model.safetensors.index.json"):
                continue
            if rel in CANDIDATE_ONLY_OK:
                continue
            out[rel] = full
    return out


def strip_config(cfg: dict) -> dict:
    cfg = json.loads(json.dumps(cfg))
    q = cfg.get("quantization_config")
    if isinstance(q, dict):
        q.pop("version", None)
    return cfg


def json_diffs(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in a:
            if k not in b:
                out.append(f"{path}/{k}: only in ref")
            else:
                out += json_diffs(a[k], b[k], f"{path}/{k}")
        for k in b:
            if k not in a:
                out.append(f"{path}/{k}: only in candidate")
        if not out and list(a) != list(b) and path in ("", "/quantization_config"):
            out.append(f"{path or '/'}: key order differs: {list(a)} vs {list(b)}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: list length {len(a)} vs {len(b)}: {json.dumps(a)[:200]} vs {json.dumps(b)[:200]}"]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += json_diffs(x, y, f"{path}[{i}]")
        return out
    if type(a) is bool or type(b) is bool:
        return [] if (a is b) else [f"{path}: {a!r} vs {b!r}"]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return [] if a == b else [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def make_manifest(d: str) -> dict:
    m = {"tensors": {}, "config": None, "weight_map": None, "side_files": {}}
    for rel, path in shard_files(d).items():
        for n, (dt, sh, b) in read_safetensors(path)[0].items():
            m["tensors"][n] = [rel, dt, sh, hashlib.sha256(b).hexdigest()]
    if os.path.isfile(os.path.join(d, "config.json")):
        m["config"] = json.load(open(os.path.join(d, "config.json")))
    if os.path.isfile(os.path.join(d, "model.safetensors.index.json")):
        m["weight_map"] = json.load(open(os.path.join(d, "model.safetensors.index.json"))).get("weight_map", {})
    for rel, path in side_files(d).items():
        m["side_files"][rel] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    for marker in ("QUARK_ERROR.txt", "SQ_ERROR.txt"):
        if os.path.isfile(os.path.join(d, marker)):
            m["error"] = open(os.path.join(d, marker)).read()[:2000]
    return m


def compare_manifest(m: dict, cand: str, label: str = "", max_report: int = 20) -> dict:
    c = make_manifest(cand)
    lines: list[str] = []
    res = {"label": label, "tensors_total": 0, "tensors_identical": 0, "config_ok": True, "files_ok": True,
           "tensor_diffs": []}

    def report(msg):
        if len(lines) <= max_report:
            lines.append(msg if len(lines) < max_report else "... (more differences not shown)")

    ref_flat = all(os.sep not in v[0] for v in m["tensors"].values())
    for name in sorted(m["tensors"]):
        res["tensors_total"] += 1
        rel, dt, sh, h = m["tensors"][name]
        if name not in c["tensors"]:
            report(f"{name}: missing in candidate")
            res["tensor_diffs"].append({"name": name, "what": "missing"})
            continue
        crel, cdt, csh, ch = c["tensors"][name]
        if ref_flat:
            crel = os.path.basename(crel)
        probs = []
        if rel != crel:
            probs.append(f"shard {rel} vs {crel}")
        if dt != cdt:
            probs.append(f"dtype {dt} vs {cdt}")
        if sh != csh:
            probs.append(f"shape {sh} vs {csh}")
        if not probs and h != ch:
            probs.append("data differs (reference is a manifest: no element shown)")
        if probs:
            report(f"{name}: " + "; ".join(probs))
            res["tensor_diffs"].append({"name": name, "what": "; ".join(probs)})
        else:
            res["tensors_identical"] += 1
    for name in sorted(set(c["tensors"]) - set(m["tensors"])):
        if not name.endswith(".weight_zero_point"):
            res["files_ok"] = False
            report(f"{name}: only in candidate")
    wa, wb = m.get("weight_map"), c.get("weight_map")
    if (wa is None) != (wb is None):
        res["files_ok"] = False
        report("model.safetensors.index.json present on one side only")
    elif wa is not None:
        if ref_flat:
            wb = {k: os.path.basename(v) for k, v in wb.items()}
        wb = {k: v for k, v in wb.items() if not (k.endswith(".weight_zero_point") and k not in wa)}
        if wa != wb:
            res["files_ok"] = False
            report("index weight_map differs")
    if m.get("config") is None or c.get("config") is None:
        res["config_ok"] = False
        report("config.json missing on one side")
    else:
        for x in json_diffs(strip_config(m["config"]), strip_config(c["config"])):
            res["config_ok"] = False
            report(f"config.json {x}")
    sa_, sb_ = m.get("side_files", {}), c.get("side_files", {})
    for rel in sorted(set(sa_) | set(sb_)):
        if sa_.get(rel) != sb_.get(rel):
            res["files_ok"] = False
            report(f"side file {rel}: differs or missing")
    res["lines"] = lines
    res["ok"] = (res["tensors_identical"] == res["tensors_total"]) and res["config_ok"] and res["files_ok"]
    return res


_BUNDLES: dict = {}


def load_ref(ref: str):
    """Returns ("dir", path) or ("manifest", dict) or ("missing", None)."""
    if "#" in ref:
        path, key = ref.split("#", 1)
        if path not in _BUNDLES:
            import gzip

            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                _BUNDLES[path] = json.load(f)
        ck, scheme = key.split("/", 1)
        m = _BUNDLES[path].get("outputs", {}).get(ck, {}).get(scheme)
        return ("manifest", m) if m is not None else ("missing", None)
    if os.path.isfile(ref):
        return "manifest", json.load(open(ref))
    if os.path.isdir(ref):
        return "dir", ref
    return "missing", None


def ref_status(ref: str) -> str:
    kind, v = load_ref(ref)
    if kind == "missing":
        return "missing"
    if kind == "manifest":
        return "error" if "error" in v else "ok"
    return "error" if any(os.path.isfile(os.path.join(v, m)) for m in ("QUARK_ERROR.txt", "SQ_ERROR.txt")) else "ok"


def compare_dirs(ref: str, cand: str, label: str = "", max_report: int = 20) -> dict:
    kind, v = load_ref(ref)
    if kind == "manifest":
        return compare_manifest(v, cand, label, max_report)
    if kind == "missing":
        raise SystemExit(f"compare.py: reference {ref} not found")
    lines: list[str] = []
    res = {"label": label, "tensors_total": 0, "tensors_identical": 0, "config_ok": True, "files_ok": True,
           "tensor_diffs": []}

    def report(msg):
        if len(lines) < max_report:
            lines.append(msg)
        elif len(lines) == max_report:
            lines.append("... (more differences not shown)")

    ra, rb = shard_files(ref), shard_files(cand)
    ref_flat = all(os.sep not in k for k in ra)
    keyb = {(os.path.basename(k) if ref_flat else k): v for k, v in rb.items()}
    if set(ra) != set(keyb):
        res["files_ok"] = False
        report(f"shard set differs: ref-only {sorted(set(ra) - set(keyb))} cand-only {sorted(set(keyb) - set(ra))}")

    ta_all, tb_all = {}, {}
    for rel, path in ra.items():
        for n, v in read_safetensors(path)[0].items():
            ta_all[n] = (rel, v)
    for rel, path in keyb.items():
        for n, v in read_safetensors(path)[0].items():
            tb_all[n] = (rel, v)

    for name in sorted(ta_all):
        res["tensors_total"] += 1
        sa, (da, sha, ba) = ta_all[name]
        if name not in tb_all:
            report(f"{name}: missing in candidate")
            res["tensor_diffs"].append({"name": name, "what": "missing"})
            continue
        sb, (db, shb, bb) = tb_all[name]
        probs = []
        if sa != sb:
            probs.append(f"shard {sa} vs {sb}")
        if da != db:
            probs.append(f"dtype {da} vs {db}")
        if sha != shb:
            probs.append(f"shape {sha} vs {shb}")
        if not probs and ba != bb:
            i, cnt = first_diff(da, ba, bb)
            n = _numel(sha)
            probs.append(f"data: {cnt}/{n} elements differ; first at {unravel(i, sha)} (flat {i}): "
                         f"ref {element(da, ba, i)} cand {element(db, bb, i)}")
            res["tensor_diffs"].append({"name": name, "what": "data", "count": cnt, "numel": n, "first": i,
                                        "ref": element(da, ba, i), "cand": element(db, bb, i)})
        elif probs:
            res["tensor_diffs"].append({"name": name, "what": "; ".join(probs)})
        if probs:
            report(f"{name}: " + "; ".join(probs))
        else:
            res["tensors_identical"] += 1
    for name in sorted(set(tb_all) - set(ta_all)):
        if name.endswith(".weight_zero_point"):
            continue  # [DIFF 4]: shardquant keeps uint4 zero points, Quark drops them
        res["files_ok"] = False
        report(f"{name}: only in candidate")

    # index weight_map [DIFF 3: total_size ignored]
    ia, ib = os.path.join(ref, "model.safetensors.index.json"), os.path.join(cand, "model.safetensors.index.json")
    if os.path.isfile(ia) and os.path.isfile(ib):
        wa = json.load(open(ia)).get("weight_map", {})
        wb = json.load(open(ib)).get("weight_map", {})
        if ref_flat:
            wb = {k: os.path.basename(v) for k, v in wb.items()}
        wb = {k: v for k, v in wb.items() if not (k.endswith(".weight_zero_point") and k not in wa)}
        if wa != wb:
            res["files_ok"] = False
            only_a = sorted(set(wa.items()) - set(wb.items()))[:5]
            only_b = sorted(set(wb.items()) - set(wa.items()))[:5]
            report(f"index weight_map differs: ref-only {only_a} cand-only {only_b}")
    elif os.path.isfile(ia) != os.path.isfile(ib):
        res["files_ok"] = False
        report("model.safetensors.index.json present in only one directory")

    ca, cb = os.path.join(ref, "config.json"), os.path.join(cand, "config.json")
    if os.path.isfile(ca) and os.path.isfile(cb):
        d = json_diffs(strip_config(json.load(open(ca))), strip_config(json.load(open(cb))))
        if d:
            res["config_ok"] = False
            for x in d:
                report(f"config.json {x}")
    else:
        res["config_ok"] = False
        report("config.json missing in one directory")

    sa_, sb_ = side_files(ref), side_files(cand)
    for rel in sorted(set(sa_) | set(sb_)):
        if rel not in sa_ or rel not in sb_:
            res["files_ok"] = False
            report(f"side file {rel}: only in {'ref' if rel in sa_ else 'candidate'}")
        elif open(sa_[rel], "rb").read() != open(sb_[rel], "rb").read():
            res["files_ok"] = False
            report(f"side file {rel}: bytes differ")
    res["lines"] = lines
    res["ok"] = (res["tensors_identical"] == res["tensors_total"]) and res["config_ok"] and res["files_ok"]
    return res


def summary_line(r: dict) -> str:
    return (f"SUMMARY {r['label'] or '-'} tensors_identical={r['tensors_identical']}/{r['tensors_total']} "
            f"config={'ok' if r['config_ok'] else 'DIFF'} files={'ok' if r['files_ok'] else 'DIFF'}")


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--status":
        print(ref_status(argv[1]))
        return 0
    if argv and argv[0] == "--manifest":
        if len(argv) != 3:
            print("usage: compare.py --manifest DIR OUT.json", file=sys.stderr)
            return 2
        with open(argv[2], "w") as f:
            json.dump(make_manifest(argv[1]), f)
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ref")
    p.add_argument("cand")
    p.add_argument("--label", default="")
    p.add_argument("--max-report", type=int, default=20)
    p.add_argument("--json", default=None, help="also write the result as JSON here")
    a = p.parse_args(argv)
    r = compare_dirs(a.ref, a.cand, a.label, a.max_report)
    for line in r["lines"]:
        print(f"  {line}")
    print(summary_line(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
