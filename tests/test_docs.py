"""The repository documents itself: docs/algorithm.md and what points to it.

Plain text and `ast` only (no JAX import, nothing compiled):
  1. no tracked .py/.md/.toml file refers to anything outside the repository;
  2. every "algorithm §<n>" citation names a section docs/algorithm.md has;
  3. every function (`tfs_jax.module.name`) and test (`tests/file.py::name`) the document
     names beside an item exists;
  4. every repository path that docs/algorithm.md and README.md write in backticks exists
     (`repo_paths`: a token with a `/` whose first part is a top-level folder of the
     repository, or whose last part has an extension; the user's example paths of the
     command-line docs, `USER_PATHS`, are not the repository's).
Each check is a function returning its problems, so `test_checks_have_power` can show that
it finds a planted one.
"""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "algorithm.md"
SUFFIXES = (".py", ".md", ".toml")

# Written in pieces so that this file does not match itself.
OUTSIDE = [
    re.escape(".." + "/shared"),          # the folder beside the checkout
    re.escape("shared" + "/"),            # any file of that folder (the contract, the paper)
    re.escape("SP" + "EC" + ".md"),       # the contract outside the repository
    re.escape("/" + "work/"),             # an absolute path of one machine
    r"\b" + "SP" + r"EC\b",               # its citations ("<that word> 7")
]
OUTSIDE_RE = re.compile("|".join(OUTSIDE))
SECTION_HEADING = re.compile(r"^## §(\w+)\.", re.M)
CITATION = re.compile(r"[Aa]lgorithm(?:\.md)? §(\w+)(?:-§?(\w+))?")
DOC_SECTION = re.compile(r"§(\w+)(?:-§?(\w+))?")
CODE_NAME = re.compile(r"`(tfs_jax(?:\.\w+)+)`")
TEST_NAME = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)  # code blocks: commands, not references
SPAN = re.compile(r"`([^`\n]+)`")
PATH_TOKEN = re.compile(r"[\w.*-]+(?:/[\w.*-]*)+")
EXTENSION = re.compile(r"\.[A-Za-z0-9*]+$")
# Folders of the command-line docs' examples (the demo's default output, `--out DIR`, a
# user's clips): the user's paths, not the repository's.
USER_PATHS = ("tfs_demo/", "DIR/", "run/", "clips/")
PATH_DOCS = ("docs/algorithm.md", "README.md")


def tracked_names() -> list[str]:
    """The repository's files, relative (git's list; a walk without git)."""
    try:
        return subprocess.run(
            ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "venv", "build", "dist", ".jax_cache", "tfs_demo"}
        return [str(p.relative_to(REPO)) for p in REPO.rglob("*")
                if not skip & set(p.relative_to(REPO).parts)]


def tracked_files() -> list[pathlib.Path]:
    """The repository's .py/.md/.toml files, minus the generated results/."""
    names = tracked_names()
    return [REPO / n for n in names
            if n.endswith(SUFFIXES) and not n.startswith("results/") and (REPO / n).is_file()]


def outside_references(files: dict[str, str]) -> list[str]:
    """`path:line: text` for every line that refers outside the repository."""
    return [
        f"{name}:{i}: {line.strip()}"
        for name, text in files.items()
        for i, line in enumerate(text.splitlines(), 1)
        if OUTSIDE_RE.search(line)
    ]


def doc_sections(doc: str) -> set[str]:
    """Section ids of the document: `0`..`11` and the named ones (`Notation`, ...)."""
    return set(SECTION_HEADING.findall(doc))


def _cited(match: re.Match) -> list[str]:
    start, end = match.group(1), match.group(2)
    if end and start.isdigit() and end.isdigit():
        return [str(n) for n in range(int(start), int(end) + 1)]
    return [start] + ([end] if end else [])


def missing_sections(files: dict[str, str], sections: set[str], *, pattern=CITATION) -> list[str]:
    """`path:line: §x` for every cited section the document does not have."""
    return [
        f"{name}:{i}: §{s}"
        for name, text in files.items()
        for i, line in enumerate(text.splitlines(), 1)
        for m in pattern.finditer(line)
        for s in _cited(m)
        if s not in sections
    ]


def _module_file(parts: list[str], root: pathlib.Path) -> tuple[pathlib.Path | None, list[str]]:
    """The longest prefix of `parts` that is a module file, and the attributes after it."""
    for cut in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:cut])
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path, parts[cut:]
    return None, parts


def _defines(body: list[ast.stmt], name: str) -> ast.stmt | None:
    """The statement of `body` that defines `name` at that level, if any."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return node
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return node
    return None


def unresolved_code(doc: str, root: pathlib.Path = REPO) -> list[str]:
    """Every `tfs_jax.module.name` of the document that no module defines."""
    bad = []
    for dotted in sorted(set(CODE_NAME.findall(doc))):
        path, attrs = _module_file(dotted.split("."), root)
        body = ast.parse(path.read_text()).body if path else None
        for attr in attrs:
            node = _defines(body, attr) if body is not None else None
            body = node.body if isinstance(node, ast.ClassDef) else None
            if node is None:
                break
        if path is None or (attrs and node is None):
            bad.append(dotted)
    return bad


def unresolved_tests(doc: str, root: pathlib.Path = REPO) -> list[str]:
    """Every `tests/file.py::name` of the document whose file does not define the test."""
    bad = []
    for file, name in sorted(set(TEST_NAME.findall(doc))):
        path = root / file
        tree = ast.parse(path.read_text()) if path.is_file() else None
        found = tree is not None and any(
            isinstance(node, ast.FunctionDef) and node.name == name for node in ast.walk(tree)
        )
        if not found:
            bad.append(f"{file}::{name}")
    return bad


def repo_paths(text: str, folders: set[str]) -> list[str]:
    """The repository paths `text` writes in backticks outside code blocks: tokens with a
    `/` whose first part is one of `folders` (the repository's top level) or whose last part
    has an extension, minus `USER_PATHS`; `tests/file.py::name` counts as its file."""
    found = []
    for span in SPAN.findall(FENCE.sub("", text)):
        for token in span.split():
            token = token.split("::")[0].strip("()[],;:'\"")
            if not PATH_TOKEN.fullmatch(token) or token.startswith(USER_PATHS):
                continue
            if token.split("/")[0] in folders or EXTENSION.search(token.rstrip("/")):
                found.append(token)
    return found


def missing_paths(text: str, root: pathlib.Path = REPO,
                  folders: set[str] | None = None) -> list[str]:
    """Every path of `repo_paths(text)` that `root` lacks. A glob needs one match, a trailing
    `/` a folder; `results/<study>.json` stands while `experiments/<study>.py` exists (the
    study writes it when it runs)."""
    if folders is None:
        folders = {n.split("/")[0] for n in tracked_names() if "/" in n}
    bad = []
    for token in sorted(set(repo_paths(text, folders))):
        record = re.fullmatch(r"results/(\w+)\.json", token)
        if "*" in token:
            ok = any(root.glob(token))
        elif token.endswith("/"):
            ok = (root / token).is_dir()
        else:
            ok = (root / token).exists() or (
                record is not None and (root / "experiments" / f"{record[1]}.py").is_file())
        if not ok:
            bad.append(token)
    return bad


def _texts() -> dict[str, str]:
    return {str(p.relative_to(REPO)): p.read_text(errors="replace") for p in tracked_files()}


def test_nothing_refers_outside_the_repository():
    problems = outside_references(_texts())
    assert not problems, "\n".join(problems[:40]) + f"\n({len(problems)} lines)"


def test_the_document_has_every_section_the_code_cites():
    doc = DOC.read_text()
    sections = doc_sections(doc)
    assert {str(n) for n in range(12)} <= sections, sorted(sections)
    problems = missing_sections(_texts(), sections)
    problems += missing_sections({"docs/algorithm.md": doc}, sections, pattern=DOC_SECTION)
    assert not problems, "\n".join(problems)


def test_every_function_and_test_the_document_names_exists():
    doc = DOC.read_text()
    assert len(CODE_NAME.findall(doc)) > 50 and len(TEST_NAME.findall(doc)) > 80  # parsed at all
    assert unresolved_code(doc) == []
    assert unresolved_tests(doc) == []


@pytest.mark.parametrize("name", PATH_DOCS)
def test_every_repository_path_the_docs_name_exists(name):
    text = (REPO / name).read_text()
    assert len(repo_paths(text, {"tests", "tfs_jax"})) > 10  # parsed at all
    assert missing_paths(text) == []


def test_checks_have_power():
    """Each check finds a planted problem, and passes the same text without it."""
    # Planted strings are built in pieces, so that this file passes its own checks.
    spec, cite = "SP" + "EC", "algorithm " + "§"
    assert outside_references({"a.md": f"see [x](../{'shared'}/{spec}.md)"})
    assert outside_references({"a.py": f"# {spec} 7: the budget"})
    assert outside_references({"a.py": f'open("/{"work"}/main/x")'})
    assert not outside_references({"a.py": f"# {cite}7: the budget; {spec}_REFERENCE"})
    sections = {"0", "7", "8", "9", "Notation"}
    assert missing_sections({"a.py": f"{cite}12"}, sections) == ["a.py:1: §12"]
    assert missing_sections({"a.py": f"{cite}7-10"}, sections) == ["a.py:1: §10"]
    assert missing_sections({"a.py": f"{cite}7-9, {cite}Notation"}, sections) == []
    assert missing_sections({"a.py": f'"""A{cite[1:]}13: ...'}, sections) == ["a.py:1: §13"]
    assert unresolved_code("`tfs_jax.primitives.no_such_function`") == ["tfs_jax.primitives.no_such_function"]
    assert unresolved_code("`tfs_jax.no_such_module.share`") == ["tfs_jax.no_such_module.share"]
    assert unresolved_code("`tfs_jax.primitives.share` `tfs_jax.config.TFSConfig.replace`") == []
    assert unresolved_tests("`tests/test_primitives.py::test_no_such_test`")
    assert unresolved_tests("`tests/no_such_file.py::test_x`")
    assert unresolved_tests("`tests/test_primitives.py::test_round_half_up`") == []
    folders = {"tests", "tfs_jax", "experiments", "results"}
    stale = "`" + "tests/spec" + "_reference.py` is a numpy implementation"  # the old path
    assert missing_paths(stale, folders=folders) == ["tests/spec" + "_reference.py"]
    assert missing_paths("`tfs_jax/reference/spec.py`, `tests/`", folders=folders) == []
    assert missing_paths("`tfs_jax/no_such_folder/`, `tests/*.nope`", folders=folders) == [
        "tests/*.nope", "tfs_jax/no_such_folder/"]
    assert missing_paths("`results/no_such_study.json` `results/bench_table2.json`",
                         folders=folders) == ["results/no_such_study.json"]
    assert missing_paths("`elsewhere/x.py` `run/figure.png`", folders=folders) == ["elsewhere/x.py"]
    assert missing_paths("```\n`tests/nope.py`\n```\n", folders=folders) == []
