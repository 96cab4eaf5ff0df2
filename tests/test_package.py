"""tfs_jax/__init__.py: the public surface, and subpackages that load on first use."""

import subprocess
import sys

import tfs_jax

HEAVY = ("flax", "onnx", "onnxruntime", "av", "matplotlib", "optax", "torch", "transformers")


def test_core_import_pulls_in_no_optional_stack():
    code = (
        "import sys, tfs_jax\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "assert 'tfs_jax.vlm' not in sys.modules and 'tfs_jax.encoders' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_subpackages_are_attributes():
    for name in tfs_jax.SUBPACKAGES:
        module = getattr(tfs_jax, name)
        assert module.__name__ == f"tfs_jax.{name}"
        assert name in dir(tfs_jax)
    assert callable(tfs_jax.baselines.uniform) and callable(tfs_jax.serving.qwen_vl_rope_index)


def test_all_names_exist_and_internal_helpers_stay_in_their_modules():
    for name in tfs_jax.__all__:
        assert hasattr(tfs_jax, name), name
    for internal in ("rank_in_group", "kept_slots", "check_key", "regional_contrast"):
        assert not hasattr(tfs_jax, internal), internal
    try:
        tfs_jax.not_a_module
    except AttributeError as err:
        assert "not_a_module" in str(err)
    else:
        raise AssertionError("unknown attribute did not raise")
