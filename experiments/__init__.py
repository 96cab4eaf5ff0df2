"""The studies and benchmarks behind the README's Results, one module each, all run by one
harness (`experiments/harness.py`: flags, compile cache, machine stamp, the digest of the
sources, refusal of a dirty tree); each study renders its own tables (`table`), which
`experiments/tables.py` assembles into README.md and results/TABLES.md.

Rerun everything from a clean checkout at the repository root (each writes
`results/<name>.json` and `.png`; times are estimates for a shared 2-core CPU, from the
previous results):

    python -m experiments.bench_overhead   #  5 min  pruner cost against one read
    python -m experiments.bench_scale      #  3 min  long videos: time and memory
    python -m experiments.bench_batch      #  1 min  vmapped batches
    python -m experiments.bench_prefill    # 15 min  LM prefill, every method and ratio
    python -m experiments.real_clips       #  5 min  quality on the bundled clips
    python -m experiments.ablations        #  3 min  factor weights and static knobs
    python -m experiments.retention        # 30 min  QA accuracy, 3 model seeds (8 min each)
    python -m experiments.tables           # seconds: README.md and results/TABLES.md
    python -m experiments.harness --stale  # the records whose sources changed since they ran

Run `tables` last: it rewrites README.md, and the harness refuses to run a study from a tree
with changes outside `results/` until they are committed.

Each takes `--smoke` (the tiny config CI runs, into a temporary folder), `--results DIR`,
`--allow-dirty` (write from a tree with uncommitted changes; recorded) and `--plot-only`. A
copy of the tree without git runs too: its records say `commit: null`, and their
`source_sha256` names the sources.
`python -m experiments.tables --check` fails when README.md or results/TABLES.md differ
from what results/*.json give. `python -m experiments.gpu_acceptance` is the GPU acceptance
run (through the harness, with flags of its own; see its docstring).

The studies' library is `experiments/lib/`, apart from the studies: `common` (clip tokens,
pruning methods, keep masks), `qa_task` (the QA task's videos, model and training),
`metrics` (quality metrics and statistics), `render` (Markdown helpers of the tables),
`acceptance` (what the GPU run checks with). Nothing here imports from or reads `tests/`.
"""
