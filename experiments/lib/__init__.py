"""What the studies of `experiments/` share, apart from the studies themselves.

`common` (cached clip tokens, the pruning methods, keep masks), `qa_task` (the retention
study's QA videos, model and training), `metrics` (quality metrics and statistics), `render`
(Markdown helpers of the tables), `acceptance` (what the GPU acceptance run checks with).
"""
