"""shardquant: quantize LLM safetensors checkpoints file to file (FP8, MXFP4, INT4, ...).

The C++ library runs with the GIL released; Ctrl-C stops a run cleanly (no half-written file
under a final name) and then raises KeyboardInterrupt. Errors arrive as ShardquantError
subclasses: InputError (bad input; also ValueError), IOError (a failing system call; also
OSError), UsageError (bad options; also ValueError), Cancelled (CancelToken.cancel() or a
callback that raised).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ._core import (
    CancelToken,
    Cancelled,
    InputError,
    IOError,
    ShardquantError,
    UsageError,
    version,
)
from . import _core

__version__ = version()
__all__ = [
    "quantize", "plan", "inspect", "schemes", "Report", "Plan", "Progress", "CancelToken",
    "ShardquantError", "InputError", "IOError", "UsageError", "Cancelled", "program",
]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class Progress:
    """One progress sample (about 4 a second, and a last one with done=True)."""
    bytes_done: int
    bytes_total: int
    shards_done: int
    shards_total: int
    seconds: float
    done: bool


class _Fields:
    """A report object: its JSON fields as attributes; `.data` is the whole dict."""

    def __init__(self, data: Dict[str, Any]):
        self.data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["data"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data!r})"


class Report(_Fields):
    """What a run did: the fields of `--report`, schema `schema_version` (every field is documented
    in pipeline/output/REPORT.md): status, tool_version, started_at, model_dir, output_dir,
    model_type, scheme, quant_spec, exclude, actions (tensors per action), per_scheme,
    tensors_out, bytes_in, bytes_out, side_files, timings, wall_seconds, gb_per_s, memory_budget,
    token_bytes, tokens, jobs, split_tensors, amax_tensors, device, loader_notes, warnings...
    A failed or cancelled run raises instead; pass `report=PATH` to keep its report (status
    "failed" or "cancelled", and the error)."""


class Plan(_Fields):
    """What a run would do, in the report's schema (kind "plan"): model_type, scheme, device,
    exclude, actions, per_scheme, shards, tensors_out, quantized, bytes_in, bytes_out,
    memory_budget, budget_chosen, token_bytes, tokens, jobs, split_tensors, amax_tensors,
    loader_notes, warnings."""


def _options(model_dir: PathLike, output_dir: Optional[PathLike], scheme: Optional[str], *,
             quant_spec: Optional[PathLike], exclude: Optional[Sequence[str]],
             layer_schemes: Union[None, Mapping[str, str], Sequence[Tuple[str, str]]],
             converters: Optional[Sequence[str]], device: str, memory_budget: Optional[int],
             streams: Optional[int], io_engine: str, overwrite: bool, resume: bool,
             keep_excluded_as_original: bool, report: Optional[PathLike]) -> "_core._Options":
    o = _core._Options()
    o.model_dir = os.fspath(model_dir)
    o.output_dir = os.fspath(output_dir) if output_dir is not None else ""
    o.scheme = scheme or ""
    o.quant_spec = os.fspath(quant_spec) if quant_spec is not None else ""
    o.exclude = None if exclude is None else [str(e) for e in exclude]
    if isinstance(layer_schemes, Mapping):
        layer_schemes = list(layer_schemes.items())
    o.layer_schemes = [(str(g), str(s)) for g, s in (layer_schemes or [])]
    o.converters = list(converters or [])
    o.device = device
    o.memory_budget = int(memory_budget or 0)
    o.streams = int(streams or 0)
    o.io_engine = io_engine
    o.overwrite = overwrite
    o.resume = resume
    o.keep_excluded_as_original = keep_excluded_as_original
    o.report_json = os.fspath(report) if report is not None else ""
    return o


def quantize(model_dir: PathLike, output_dir: PathLike, scheme: Optional[str] = None, *,
             quant_spec: Optional[PathLike] = None, exclude: Optional[Sequence[str]] = None,
             layer_schemes: Union[None, Mapping[str, str], Sequence[Tuple[str, str]]] = None,
             converters: Optional[Sequence[str]] = None, device: str = "auto",
             memory_budget: Optional[int] = None, progress: Optional[Callable[[Progress], Any]] = None,
             on_warning: Optional[Callable[[str], Any]] = None, cancel: Optional[CancelToken] = None,
             overwrite: bool = False, resume: bool = False, streams: Optional[int] = None,
             io_engine: str = "auto", keep_excluded_as_original: bool = False,
             report: Optional[PathLike] = None) -> Report:
    """Quantize the checkpoint in `model_dir` into `output_dir` with `scheme` (see schemes()).

    exclude: module globs left unquantized (None: the model type's template list; []: none).
    layer_schemes: {glob: scheme} (first match wins). memory_budget: bytes (None: automatic).
    progress: called with a Progress about 4 times a second (from another thread, with the GIL).
    cancel: a CancelToken; cancel() from any thread stops the run, which raises Cancelled.
    report: a path for the JSON report (checked before the run starts; written atomically, also
    when the run fails or is cancelled).
    """
    o = _options(model_dir, output_dir, scheme, quant_spec=quant_spec, exclude=exclude,
                 layer_schemes=layer_schemes, converters=converters, device=device,
                 memory_budget=memory_budget, streams=streams, io_engine=io_engine,
                 overwrite=overwrite, resume=resume,
                 keep_excluded_as_original=keep_excluded_as_original, report=report)
    cb = None if progress is None else (lambda d: progress(Progress(**d)))
    return Report(json.loads(_core._quantize(o, cb, on_warning, cancel)))


def plan(model_dir: PathLike, scheme: Optional[str] = None, *, quant_spec: Optional[PathLike] = None,
         exclude: Optional[Sequence[str]] = None,
         layer_schemes: Union[None, Mapping[str, str], Sequence[Tuple[str, str]]] = None,
         converters: Optional[Sequence[str]] = None, device: str = "auto",
         memory_budget: Optional[int] = None, keep_excluded_as_original: bool = False) -> Plan:
    """What quantize() with the same arguments would do (headers only; nothing written)."""
    o = _options(model_dir, None, scheme, quant_spec=quant_spec, exclude=exclude,
                 layer_schemes=layer_schemes, converters=converters, device=device,
                 memory_budget=memory_budget, streams=None, io_engine="auto", overwrite=False,
                 resume=False, keep_excluded_as_original=keep_excluded_as_original, report=None)
    return Plan(json.loads(_core._plan(o)))


def inspect(path: PathLike) -> Dict[str, Any]:
    """`shardquant inspect --json PATH`: tensors, dtypes, shapes, bytes, quantization_config."""
    return json.loads(_core._inspect(os.fspath(path)))


def schemes() -> List[Dict[str, str]]:
    """Every built-in scheme: [{"name": ..., "help": ...}, ...]."""
    return [{"name": n, "help": h} for n, h in _core._schemes()]


def program() -> str:
    """The path of the `shardquant` program shipped in this package."""
    return os.path.join(os.path.dirname(__file__), "bin", "shardquant")
