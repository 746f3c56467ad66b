"""Import Quark in environments that lack some of its import-time-only dependencies.

Owns: `prepare()`, which imports quark.torch and, if that fails because one of a short list of
packages that the file-to-file path never calls is missing (dataset loading, ONNX export helpers),
puts an inert stub module in its place and says so on stderr. Used on machines where packages travel
as wheels (the GPU machine) and a missing or incompatible optional package would otherwise stop the
whole run. Must not stub anything that computes quantized bytes.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types

# Imported by `import quark.torch` (export/ONNX/LLM-data utilities) but never used by
# quantize_model_per_safetensor (compressed_tensors only for compressed-tensors sources).
OPTIONAL = ("datasets", "onnxslim", "evaluate", "plotly", "compressed_tensors")
STUBBED: list[str] = []


class _Anything:
    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return _Anything()

    def __getattr__(self, name):
        return _Anything()

    def __mro_entries__(self, bases):
        return (object,)


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, roots):
        self.roots = set(roots)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = _StubModule(spec.name)
        m.__path__ = []
        m.__version__ = "0+stub"
        return m

    def exec_module(self, module):
        pass


def prepare(verbose: bool = True) -> list[str]:
    """Stubs every optional package that fails to import, then imports quark.torch.

    Checked before Quark is imported: a half-imported Quark cannot be imported again (its torch
    custom ops are registered once per process)."""
    for name in OPTIONAL:
        if name in STUBBED:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - any failure to import makes it unusable here
            for m in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
                del sys.modules[m]
            sys.meta_path.insert(0, _StubFinder([name]))
            STUBBED.append(name)
            if verbose:
                print(f"quark_env: STUBBED optional package '{name}' ({type(e).__name__}: {e}); "
                      "it is not used by the file-to-file flow", file=sys.stderr)
    importlib.import_module("quark.torch")
    importlib.import_module("quark.torch.quantization.file2file_quantization")
    return STUBBED
