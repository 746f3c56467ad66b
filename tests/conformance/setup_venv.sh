#!/usr/bin/env bash
# Creates the conformance virtual environment (default: <repo>/.venv-conformance, git-ignored by
# /.venv*/) with CPU PyTorch, safetensors, numpy, compressed-tensors and amd-quark.
# Owns only that venv; never touches the system Python.
# Usage: tests/conformance/setup_venv.sh [VENV_DIR]
# Env: PYTHON (interpreter, default python3.12 then python3), TORCH_SPEC (default torch==2.11.0),
#      QUARK_SPEC (default amd-quark==0.13).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${1:-$repo/.venv-conformance}"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  for c in python3.12 python3; do
    if "$c" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then py="$c"; break; fi
  done
fi
[[ -n "$py" ]] || { echo "setup_venv.sh: need Python >= 3.11 (set PYTHON)" >&2; exit 2; }
torch_spec="${TORCH_SPEC:-torch==2.11.0}"
quark_spec="${QUARK_SPEC:-amd-quark==0.13}"

"$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check)
# CPU build of torch: the PyTorch CPU index when reachable, else PyPI (whose Linux wheel is the CUDA
# build; it also runs on CPU, only larger).
if ! "${pip[@]}" --timeout 15 --retries 0 --index-url https://download.pytorch.org/whl/cpu "$torch_spec"; then
  echo "setup_venv.sh: PyTorch CPU index not reachable; installing $torch_spec from PyPI" >&2
  "${pip[@]}" "$torch_spec"
fi
"${pip[@]}" -r "$here/requirements.txt" "$quark_spec"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
for p in ("torch", "safetensors", "numpy", "compressed-tensors", "amd-quark"):
    print(f"{p}=={md.version(p)}")
import torch, quark  # noqa: F401  (import check)
from quark.torch.quantization.config.template import LLMTemplate  # noqa: F401
from quark.torch.quantization.file2file_quantization import quantize_model_per_safetensor  # noqa: F401
print("setup_venv.sh: ok")
PY
