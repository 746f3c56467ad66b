"""The shardquant Python package (pip install .): progress callback, cancel from another thread
and Ctrl-C leave no final-named partial file, errors arrive as their classes, outputs
byte-identical to the program's."""
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import shardquant as sq

MiB = 1 << 20


def tree(root: Path):
    """relative path -> bytes of every file under root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def model(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("src") / "llama"
    subprocess.run([sq.program(), "make-checkpoint", "--arch", "llama", "--size", "24M",
                    "--shard-size", "2M", "--seed", "4", "--out", str(d)], check=True,
                   stdout=subprocess.DEVNULL)
    return d


@pytest.fixture(scope="session")
def big(tmp_path_factory):
    """A checkpoint that takes a while at an 8 MiB budget (many shards), and its whole output."""
    root = tmp_path_factory.mktemp("big")
    d = root / "llama"
    subprocess.run([sq.program(), "make-checkpoint", "--arch", "llama", "--size", "512M",
                    "--shard-size", "8M", "--seed", "6", "--out", str(d)], check=True,
                   stdout=subprocess.DEVNULL)
    sq.quantize(d, root / "whole", "mxfp4", device="cpu", memory_budget=8 * MiB)
    return d, tree(root / "whole")


@pytest.fixture(scope="session")
def cli_output(model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "out"
    subprocess.run([sq.program(), "quantize", "--model-dir", str(model), "--output-dir", str(out),
                    "--scheme", "mxfp4", "--device", "cpu", "--quiet"], check=True)
    return out


def test_quantize_with_progress_is_byte_identical_to_the_program(model, cli_output, tmp_path):
    samples = []
    r = sq.quantize(model, tmp_path / "out", "mxfp4", device="cpu", progress=samples.append)
    assert isinstance(r, sq.Report)
    assert r.device == "cpu" and r.jobs > 0 and r.bytes_in > 0
    assert samples and samples[-1].done and samples[-1].bytes_done == samples[-1].bytes_total
    assert all(isinstance(s, sq.Progress) for s in samples)
    assert tree(tmp_path / "out") == tree(cli_output)


def test_plan_agrees_with_the_run_and_writes_nothing(model, tmp_path):
    p = sq.plan(model, "fp8", exclude=[], memory_budget=16 * MiB, device="cpu")
    assert isinstance(p, sq.Plan)
    r = sq.quantize(model, tmp_path / "out", "fp8", exclude=[], memory_budget=16 * MiB,
                    device="cpu")
    for key in ("memory_budget", "token_bytes", "tokens", "jobs", "split_tensors", "amax_tensors"):
        assert getattr(p, key) == getattr(r, key), key


def _complete_or_absent(out: Path, whole: dict):
    for rel, data in tree(out).items():
        assert ".sq-tmp-" not in rel
        if rel.endswith(".safetensors"):
            assert whole[rel] == data, rel
    assert not (out / "config.json").exists()


def test_cancel_from_another_thread_leaves_no_final_named_partial_file(big, tmp_path):
    model, whole = big
    token = sq.CancelToken()
    started = threading.Event()
    t = threading.Thread(target=lambda: (started.wait(30), token.cancel()))
    t.start()
    def on_progress(s):
        if not s.done:
            started.set()
            time.sleep(0.2)  # the other thread cancels meanwhile; the graph keeps running

    with pytest.raises(sq.Cancelled, match="cancelled"):
        sq.quantize(model, tmp_path / "out", "mxfp4", device="cpu", memory_budget=8 * MiB,
                    cancel=token, progress=on_progress)
    t.join()
    assert token.cancelled
    _complete_or_absent(tmp_path / "out", whole)


def test_ctrl_c_cancels_cleanly_and_raises_keyboard_interrupt(big, tmp_path):
    model, whole = big
    fired = []

    def on_progress(s):
        if not fired and not s.done:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGINT)  # handled by the main thread's watcher
            time.sleep(0.2)  # (without the GIL) the watcher sees it within 50 ms

    with pytest.raises(KeyboardInterrupt):
        sq.quantize(model, tmp_path / "out", "mxfp4", device="cpu", memory_budget=8 * MiB,
                    progress=on_progress)
    _complete_or_absent(tmp_path / "out", whole)


def test_a_raising_progress_callback_stops_the_run_with_its_exception(model, tmp_path):
    def boom(s):
        raise ZeroDivisionError("from the callback")

    with pytest.raises(ZeroDivisionError):
        sq.quantize(model, tmp_path / "out", "mxfp4", device="cpu", progress=boom)


def test_errors_arrive_as_their_classes(model, tmp_path):
    with pytest.raises(sq.UsageError, match="unknown scheme"):
        sq.quantize(model, tmp_path / "a", "no_such_scheme")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{}")
    (bad / "model.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(sq.InputError) as e:
        sq.quantize(bad, tmp_path / "b", "mxfp4")
    assert "model.safetensors" in str(e.value)
    assert isinstance(e.value, sq.ShardquantError) and isinstance(e.value, ValueError)
    assert issubclass(sq.IOError, sq.ShardquantError) and issubclass(sq.IOError, OSError)
    assert issubclass(sq.Cancelled, sq.ShardquantError)
    with pytest.raises(sq.UsageError):
        sq.quantize(model, tmp_path / "c", "mxfp4", overwrite=True, resume=True)


def test_inspect_and_schemes(model):
    info = sq.inspect(model)
    assert info["tensor_count"] > 0 and info["files"]
    names = [s["name"] for s in sq.schemes()]
    assert "mxfp4" in names and "fp8" in names
    assert sq.__version__


def test_the_report_has_its_schema_and_a_failed_run_still_writes_one(model, tmp_path):
    r = sq.quantize(model, tmp_path / "out", "mxfp4", device="cpu", report=tmp_path / "r.json")
    assert r.schema_version == 1 and r.kind == "run" and r.status == "ok" and r.error is None
    assert r.tool_version == sq.__version__ and r.scheme == "mxfp4" and r.exclude == ["lm_head"]
    assert r.actions["quantize"] > 0 and r.timings["total_seconds"] > 0
    assert json.loads((tmp_path / "r.json").read_text()) == r.data
    assert sq.plan(model, "mxfp4", device="cpu").actions == r.actions

    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    shard = sorted(bad.glob("*.safetensors"))[0]
    with open(shard, "r+b") as f:
        f.write(b"\xff\xff\xff\x0f\0\0\0\0")  # a header length far beyond the file
    with pytest.raises(sq.InputError):
        sq.quantize(bad, tmp_path / "out2", "mxfp4", device="cpu", report=tmp_path / "f.json")
    failed = json.loads((tmp_path / "f.json").read_text())
    assert failed["status"] == "failed" and failed["error"]["file"] == str(shard)

    with pytest.raises(sq.UsageError, match="does not exist"):
        sq.quantize(model, tmp_path / "out3", "mxfp4", report=tmp_path / "missing" / "r.json")
    assert not (tmp_path / "out3").exists()
