#!/usr/bin/env python3
"""Run AMD Quark's file-to-file quantizer (the reference of formats.md §1.2) on one checkpoint.

Owns: building Quark's config the way formats.md says (LLMTemplate.get(model_type).get_config(
scheme=..., exclude_layers=..., layer_config=...)) and calling
ModelQuantizer.direct_quantize_checkpoint (= quantize_model_per_safetensor) on a given device.
Must not depend on shardquant (it is the reference the C++ is compared with).

Quark deletes its save_path at start and on failure, so this script refuses an existing
non-empty output directory unless --replace is given (then the directory is Quark's to delete).

Usage:
  quark_ref.py --model-dir IN --output-dir OUT --scheme S [--device cpu|cuda]
               [--model-type T] [--exclude GLOB ...] [--no-exclude]
               [--layer-config GLOB=SCHEME ...] [--keep-original] [--no-converters] [--replace]
               [--rotation r1,r2,r4 | --rotation-config FILE.json]
               [--kv-cache-scheme fp8] [--attention-scheme fp8] [--min-kv-scale X]
               (get_config's kv_cache_scheme / attention_scheme / min_kv_scale: FORMATS-rotation R.9)
               (rotation: get_config(algorithm="rotation", algo_configs={"rotation": RotationConfig}), the
               config built as shardquant's --rotation / --rotation-config build it:
               kernels/FORMATS-rotation.md)
  quark_ref.py --model-dir IN --output-dir OUT --spec SPEC.json [...]
               (a custom quantization spec file, the format of shardquant's --quant-spec: the global
               QLayerConfig gets weight=[stage-1 QTensorConfig, stage-2 QTensorConfig] (or one
               QTensorConfig) and the spec's input_tensors; everything else as for the template's
               int4_fp8 config: exclude list, converters, layer configs)
  quark_ref.py --jobs FILE [--device ...]   (one process for many runs: each line of FILE is
               "MODEL_DIR SCHEME OUTPUT_DIR [--keep-original] [--no-converters] [--no-exclude]
               [--exclude G]... [--layer-config G=S]... [--rotation R] [--rotation-config F] [--kv-cache-scheme S]
               [--attention-scheme S] [--min-kv-scale X]"; a failed run leaves OUTPUT_DIR/QUARK_ERROR.txt
               with the exception and goes on; prints one "JOB ok|error ..." line per run; a SCHEME
               ending in .json is a --spec file)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time


def rotation_config(model_type: str, rotation: str | None, rotation_file: str | None):
    """Quark's RotationConfig as shardquant's --rotation r1,r2,r4 (the model type's built-in config with
    those rotations on and R1 online) or --rotation-config FILE.json (RotationConfig.from_dict) builds it."""
    import copy

    from quark.torch.quantization.config.algo_configs import ROTATION_MAP
    from quark.torch.quantization.config.config import RotationConfig

    if rotation_file:
        with open(rotation_file) as f:
            return RotationConfig.from_dict(json.load(f))
    wanted = set(rotation.split(","))
    if not wanted <= {"r1", "r2", "r4"}:
        raise SystemExit(f"quark_ref: --rotation takes a subset of r1,r2,r4, got {rotation!r}")
    base = ROTATION_MAP.get(model_type)
    if base is None:
        raise NotImplementedError(f"No built-in rotation configuration is available for the '{model_type}' architecture")
    fields = {k: copy.deepcopy(getattr(base, k)) for k in base.__dataclass_fields__}
    fields.update(r1="r1" in wanted, r2="r2" in wanted, r3=False, r4="r4" in wanted,
                  online_r1_rotation=True if "r1" in wanted else None, online_config=None)
    return RotationConfig(**fields)


def build_config(model_dir: str, scheme: str, model_type: str | None = None,
                 exclude: list[str] | None = None, layer_config: dict[str, str] | None = None,
                 rotation: str | None = None, rotation_file: str | None = None, kv: dict | None = None):
    """Returns (QConfig, template) exactly as formats.md §1.2 builds it; `kv` holds get_config's
    kv_cache_scheme / attention_scheme / min_kv_scale when given."""
    from quark.torch import LLMTemplate

    if model_type is None:
        with open(os.path.join(model_dir, "config.json")) as f:
            cfg = json.load(f)
        model_type = cfg.get("model_type") or (cfg.get("architectures") or [None])[0]
    template = LLMTemplate.get(model_type)
    extra = dict(kv or {})
    if rotation or rotation_file:
        rc = rotation_config(model_type, rotation, rotation_file)
        config = template.get_config(scheme=scheme, exclude_layers=exclude, layer_config=layer_config or None,
                                     algorithm="rotation", algo_configs={"rotation": rc}, **extra)
    else:
        config = template.get_config(scheme=scheme, exclude_layers=exclude, layer_config=layer_config or None,
                                     **extra)
    return config, template


# --spec: the JSON spec file of shardquant's --quant-spec (README "Custom progressive specs").
_SPEC_KEYS = {"dtype", "qscheme", "ch_axis", "group_size", "symmetric", "is_dynamic", "scale_type",
              "round_method", "zero_point_type", "block_size", "scale_format", "scale_calculation_mode",
              "mx_element_dtype", "observer_cls", "is_scale_quant", "enable_buffer_reuse", "max_input_numel"}


def _tensor_config(obj, template, where: str, part: str):
    """One stage (or input spec) of a spec file as Quark's QTensorConfig: a built-in scheme name takes
    that scheme's own spec from the template; an object is built with the DataTypeSpec class Quark's
    templates use for that (dtype, qscheme)."""
    from quark.torch.quantization.config import config as qc

    if obj is None:
        return None
    if isinstance(obj, str):
        layer = template.get_config(scheme=obj).global_quant_config
        spec = getattr(layer, part)
        if isinstance(spec, list):
            raise SystemExit(f"quark_ref: {where}: scheme {obj!r} has a progressive {part} spec")
        return spec
    unknown = set(obj) - _SPEC_KEYS
    if unknown:
        raise SystemExit(f"quark_ref: {where}: unknown keys {sorted(unknown)}")
    dt, qs = obj["dtype"], obj["qscheme"]
    dyn = obj.get("is_dynamic", False)
    st = obj.get("scale_type", "float")
    sym = obj.get("symmetric")
    ax = obj.get("ch_axis", 0 if qs == "per_channel" else -1)
    g = obj.get("group_size")
    if dt == "fp8_e4m3" and qs == "per_tensor":
        return qc.FP8E4M3PerTensorSpec(observer_method="min_max", scale_type=st,
                                       is_dynamic=dyn).to_quantization_spec()
    if dt == "fp8_e4m3" and qs == "per_channel":
        return qc.FP8E4M3PerChannelSpec(ch_axis=ax, scale_type=st, is_dynamic=dyn).to_quantization_spec()
    if dt == "int8" and qs == "per_tensor":
        return qc.Int8PerTensorSpec(observer_method="min_max", symmetric=True if sym is None else sym,
                                    scale_type=st, is_dynamic=dyn).to_quantization_spec()
    if dt == "int4" and qs == "per_channel":
        return qc.Int4PerChannelSpec(ch_axis=ax, symmetric=True if sym is None else sym, scale_type=st,
                                     is_dynamic=dyn).to_quantization_spec()
    if dt == "int4" and qs == "per_group":
        return qc.Int4PerGroupSpec(ch_axis=ax, group_size=g, symmetric=True if sym is None else sym,
                                   scale_type=st, is_dynamic=dyn).to_quantization_spec()
    if dt == "uint4" and qs == "per_channel":
        return qc.Uint4PerChannelSpec(ch_axis=ax, symmetric=False if sym is None else sym, scale_type=st,
                                      is_dynamic=dyn).to_quantization_spec()
    if dt == "uint4" and qs == "per_group":
        return qc.Uint4PerGroupSpec(ch_axis=ax, group_size=g, symmetric=False if sym is None else sym,
                                    scale_type=st, is_dynamic=dyn).to_quantization_spec()
    raise SystemExit(f"quark_ref: {where}: (dtype {dt!r}, qscheme {qs!r}) not mapped")


def build_spec_config(model_dir: str, spec_path: str, model_type: str | None = None,
                      exclude: list[str] | None = None, layer_config: dict[str, str] | None = None):
    """Returns (QConfig, template): the template's int4_fp8 config (exclude list, layer configs) with
    the global QLayerConfig replaced by the spec file's weight stages and input_tensors."""
    from quark.torch.quantization.config.config import QLayerConfig

    config, template = build_config(model_dir, "int4_fp8", model_type, exclude, layer_config)
    with open(spec_path) as f:
        spec = json.load(f)
    weight = spec["weight"]
    if isinstance(weight, list) and len(weight) == 1:
        weight = weight[0]
    if isinstance(weight, list):
        w = [_tensor_config(s, template, f"{spec_path}: weight[{i}]", "weight") for i, s in enumerate(weight)]
    else:
        w = _tensor_config(weight, template, f"{spec_path}: weight", "weight")
    inp = _tensor_config(spec.get("input_tensors"), template, f"{spec_path}: input_tensors", "input_tensors")
    config.global_quant_config = QLayerConfig(weight=w, input_tensors=inp)
    return config, template


def run_quark(model_dir: str, output_dir: str, scheme: str, device: str = "cpu",
              model_type: str | None = None, exclude: list[str] | None = None,
              layer_config: dict[str, str] | None = None, keep_original: bool = False,
              use_converters: bool = True, replace: bool = False, spec: str | None = None,
              rotation: str | None = None, rotation_file: str | None = None, kv: dict | None = None) -> float:
    """Quantizes model_dir into output_dir with Quark F2F; returns the wall time in seconds."""
    from quark.torch import ModelQuantizer

    if os.path.realpath(output_dir) == os.path.realpath(model_dir):
        raise SystemExit("quark_ref: output dir equals the model dir")
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not replace:
        raise SystemExit(f"quark_ref: {output_dir} exists and is not empty; Quark would delete it "
                         "(pass --replace to allow that)")
    if spec:
        config, template = build_spec_config(model_dir, spec, model_type, exclude, layer_config)
    else:
        config, template = build_config(model_dir, scheme, model_type, exclude, layer_config, rotation,
                                        rotation_file, kv)
    converters = template.f2f_weight_converters if use_converters else None
    quantizer = ModelQuantizer(config)
    t0 = time.perf_counter()
    quantizer.direct_quantize_checkpoint(
        pretrained_model_path=model_dir,
        save_path=output_dir,
        keep_excluded_layers_as_original_model_state=keep_original,
        weight_converters=converters,
        device=device,
    )
    elapsed = time.perf_counter() - t0
    if not os.path.isfile(os.path.join(output_dir, "config.json")):
        # Quark logs an error and returns without output in some cases (e.g. FP8 source on CPU).
        raise SystemExit(f"quark_ref: Quark wrote no config.json into {output_dir}")
    return elapsed


def quiet_quark() -> None:
    """Quark logs every tensor at INFO; keep warnings and errors only."""
    os.environ.setdefault("QUARK_LOG_LEVEL", "warning")
    logging.getLogger("quark").setLevel(logging.WARNING)


def kv_options(a) -> dict:
    """get_config's kv_cache_scheme / attention_scheme / min_kv_scale, only those given."""
    kv = {}
    if a.kv_cache_scheme:
        kv["kv_cache_scheme"] = a.kv_cache_scheme
    if a.attention_scheme:
        kv["attention_scheme"] = a.attention_scheme
    if a.min_kv_scale is not None:
        kv["min_kv_scale"] = a.min_kv_scale
    return kv


def run_jobs(a, exclude, layer_config) -> int:
    import traceback

    failures = 0
    with open(a.jobs) as f:
        jobs = [line.split() for line in f if line.strip() and not line.startswith("#")]
    for job in jobs:
        model_dir, scheme, out_dir = job[:3]
        j_spec = None
        if scheme.endswith(".json"):  # a spec file in the SCHEME column
            j_spec = scheme
        # per-line options: --keep-original --no-converters --no-exclude --exclude G --layer-config G=S
        j_exclude, j_layers, j_keep, j_conv = exclude, dict(layer_config), a.keep_original, not a.no_converters
        j_rot, j_rot_file = a.rotation, a.rotation_config
        j_kv = kv_options(a)
        rest = job[3:]
        while rest:
            opt = rest.pop(0)
            if opt == "--keep-original":
                j_keep = True
            elif opt == "--no-converters":
                j_conv = False
            elif opt == "--no-exclude":
                j_exclude = []
            elif opt == "--exclude":
                j_exclude = (j_exclude or []) + [rest.pop(0)]
            elif opt == "--layer-config":
                g, _, sch = rest.pop(0).rpartition("=")
                j_layers[g] = sch
            elif opt == "--rotation":
                j_rot = rest.pop(0)
            elif opt == "--rotation-config":
                j_rot_file = rest.pop(0)
            elif opt in ("--kv-cache-scheme", "--attention-scheme"):
                j_kv[opt[2:].replace("-", "_")] = rest.pop(0)
            elif opt == "--min-kv-scale":
                j_kv["min_kv_scale"] = float(rest.pop(0))
            else:
                raise SystemExit(f"quark_ref: unknown job option {opt!r}")
        try:
            elapsed = run_quark(model_dir, out_dir, scheme, a.device, a.model_type, j_exclude, j_layers,
                                j_keep, j_conv, a.replace, j_spec, j_rot, j_rot_file, j_kv)
            print(f"JOB ok {scheme} {model_dir} -> {out_dir} {elapsed:.2f}s", flush=True)
        except BaseException as e:  # noqa: BLE001 - record Quark's failure as a result
            if isinstance(e, KeyboardInterrupt):
                raise
            failures += 1
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "QUARK_ERROR.txt"), "w") as g:
                g.write(f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}")
            print(f"JOB error {scheme} {model_dir} -> {out_dir}: {type(e).__name__}: {str(e)[:200]}", flush=True)
    print(f"quark_ref: {len(jobs)} jobs, {failures} Quark errors")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir")
    p.add_argument("--output-dir")
    p.add_argument("--scheme")
    p.add_argument("--spec", default=None, help="custom quantization spec file (shardquant --quant-spec format)")
    p.add_argument("--jobs", default=None, help="file of 'MODEL_DIR SCHEME OUTPUT_DIR' lines")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--model-type", default=None, help="LLMTemplate name (default: config.json model_type)")
    p.add_argument("--exclude", action="append", default=None, help="exclude glob (repeatable); "
                   "default: the template's list")
    p.add_argument("--no-exclude", action="store_true", help="explicitly empty exclude list")
    p.add_argument("--layer-config", action="append", default=[], metavar="GLOB=SCHEME")
    p.add_argument("--keep-original", action="store_true",
                   help="keep_excluded_layers_as_original_model_state=True")
    p.add_argument("--no-converters", action="store_true", help="do not pass the template's F2F converters")
    p.add_argument("--replace", action="store_true", help="allow Quark to delete a non-empty output dir")
    p.add_argument("--rotation", default=None, help="a subset of r1,r2,r4 (shardquant --rotation)")
    p.add_argument("--rotation-config", default=None, help="RotationConfig JSON (shardquant --rotation-config)")
    p.add_argument("--kv-cache-scheme", default=None, help="get_config kv_cache_scheme (fp8)")
    p.add_argument("--attention-scheme", default=None, help="get_config attention_scheme (fp8)")
    p.add_argument("--min-kv-scale", type=float, default=None, help="get_config min_kv_scale")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)
    if not a.verbose:
        quiet_quark()
    exclude = [] if a.no_exclude else a.exclude
    layer_config = {}
    for item in a.layer_config:
        glob, sep, scheme = item.rpartition("=")
        if not sep or not glob:
            p.error(f"--layer-config wants GLOB=SCHEME, got {item!r}")
        layer_config[glob] = scheme
    import quark_env
    import torch

    quark_env.prepare()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("quark_ref: CUDA requested but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    if a.jobs:
        return run_jobs(a, exclude, layer_config)
    if not (a.model_dir and a.output_dir and (a.scheme or a.spec)):
        p.error("--model-dir, --output-dir and --scheme or --spec are required (or --jobs)")
    elapsed = run_quark(a.model_dir, a.output_dir, a.scheme, a.device, a.model_type, exclude, layer_config,
                        a.keep_original, not a.no_converters, a.replace, a.spec, a.rotation, a.rotation_config,
                        kv_options(a))
    print(f"quark_ref: {a.spec or a.scheme} on {a.device}: {a.model_dir} -> {a.output_dir} in {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
