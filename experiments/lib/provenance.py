"""Which sources produced a result: one digest function for the harness's records and the
studies' caches.

`source_digest(files)` is the sha256 of the files' paths (relative to the repository) and
bytes, in sorted order. The harness records `study_digest(name)` in every record
(`source_sha256`), beside the commit when there is one, so that a tree without git (the
GPU machine gets a copy, not a clone) still names its exact sources and `python -m
experiments.harness --stale` finds the records whose code changed. The caches of
`experiments.lib.common` and `experiments.lib.qa_task` key their files by the digest of
the code that produced them (`code_digest`), so that no rerun reuses stale tokens or models.
Needs the standard library only.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import pathlib
from typing import Iterable

REPO = pathlib.Path(__file__).resolve().parent.parent.parent  # read at each call (tests move it)
# What every study imports: the package (its data too: the reference's real tokens), the
# experiments' library and the harness.
LIBRARY = (("tfs_jax", ("*.py", "*.npz")), ("experiments/lib", ("*.py",)),
           ("experiments/harness.py", ()))


def source_digest(files: Iterable[pathlib.Path]) -> str:
    """sha256 (64 hex digits) of `files`: each one's path relative to the repository and
    its bytes, in path order (so neither the order given nor the checkout's folder count)."""
    h, root = hashlib.sha256(), REPO.resolve()
    for path in sorted({pathlib.Path(f).resolve() for f in files}):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def tree_files(folder: str, patterns=("*.py",)) -> list[pathlib.Path]:
    """Files matching `patterns` under `folder` (relative to the repository), caches left out."""
    root = REPO / folder
    if root.is_file():
        return [root]
    found = root.rglob if root.is_dir() else (lambda _: [])  # a folder not (or no longer) here
    return [f for pat in patterns for f in found(pat) if "__pycache__" not in f.parts]


def library_files() -> list[pathlib.Path]:
    return [f for folder, pats in LIBRARY for f in tree_files(folder, pats)]


def imported_studies(name: str) -> set[str]:
    """`name` and the study modules it imports from `experiments` (an ablation reuses
    real_clips' code, say), read from the source, transitively."""
    seen, todo = set(), [name]
    while todo:
        current = todo.pop()
        path = REPO / "experiments" / f"{current}.py"
        if current in seen or not path.is_file():
            continue
        seen.add(current)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "experiments":
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "experiments."):
                todo.append(node.module.split(".")[1])
    return seen


def study_files(name: str) -> list[pathlib.Path]:
    """The sources of study `name`: the package, the experiments' library and harness, the
    study module and the studies it imports (those that are files: a study built in memory,
    as the tests make, counts by the library alone)."""
    return library_files() + [REPO / "experiments" / f"{s}.py"
                              for s in sorted(imported_studies(name))]


def study_digest(name: str) -> str:
    return source_digest(study_files(name))


@functools.lru_cache(maxsize=None)
def code_digest(*folders: str) -> str:
    """`source_digest` of the Python files under `folders` (folders or files, relative to
    the repository): the key of a cache produced by that code. Computed once per process."""
    return source_digest(f for folder in folders for f in tree_files(folder))
