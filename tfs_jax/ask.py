"""`tfs-jax ask`: a VLM checkpoint folder and a video in, a (pruned) answer out.

    tfs-jax ask --model DIR VIDEO "question" [--ratio R] [--method NAME] [--max-new-tokens N]
        [--dtype checkpoint|float32|bfloat16]

The checkpoint's `model_type` picks the family (`FAMILIES`: Qwen2.5-VL, LLaVA-OneVision, InternVL3.5).
The steps, each a public block (a user can run them one by one):

1. `models.chat.Chat`: the folder's chat template and `tokenizer.json`;
2. the family's `request` (e.g. `models.qwen2_5_vl.ask`): frames sampled and processed as
   the family's reference processor does, the chat template rendered around the video and
   the question, its video placeholder expanded to the model's token count;
3. `models.load(DIR, dtype=...)`: `config.json` and the safetensors shards, every tensor
   checked; weights in the checkpoint's dtype unless `--dtype` says otherwise (last: every
   cheaper check comes first);
4. the model's stages through the family's calls, each timed and blocked on: `vision`,
   `prune` (TFS by default when `--ratio` is given, or `--method` any of `baselines.RULES`;
   no `--ratio`: unpruned), `prompt` + `prefill`, and greedy `decode` steps until `eos` or
   `--max-new-tokens`.

Prints the answer, then one line: tokens kept (of how many) and the seconds of each stage
(the first call of each program includes its compilation). Progress goes to stderr. Bad
input raises `ValueError` (the CLI prints it as one line and exits 2); nothing is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from typing import NamedTuple

import numpy as np

DEFAULT_MAX_NEW_TOKENS = 64
DTYPES = ("checkpoint", "float32", "bfloat16")
# model_type -> the family's ask module: `request`, `vision`, `prune`, `prompt` (`Request`).
FAMILIES = {
    "qwen2_5_vl": "tfs_jax.models.qwen2_5_vl.ask",
    "llava_onevision": "tfs_jax.models.llava_onevision.ask",
    "internvl": "tfs_jax.models.internvl.ask",
}


class Request(NamedTuple):
    """A family's `request(model_dir, video_path, question, chat, *, progress)` result.

    The family module (a `FAMILIES` value) also defines the stage calls on it:
    `vision(model, media) -> embeds`, `prune(model, embeds, media, *, prune, retain_ratio)
    -> pruned | None` (a `keep_mask` over the `total` prunable tokens) and
    `prompt(model, input_ids, embeds, media, pruned) -> Prompt` (for `Model.prefill`).

    Attributes:
        input_ids: `(L,)` int32 prompt ids: the chat template rendered, placeholders expanded.
        media: the family's processor output (what its stage calls read).
        total: prunable video tokens of the unpruned prompt.
    """

    input_ids: np.ndarray
    media: object
    total: int


@dataclasses.dataclass(frozen=True)
class Answer:
    """What `ask` returns.

    Attributes:
        text: the decoded answer (special tokens left out).
        token_ids: `(n,)` int32 greedy tokens, the final `eos` included when reached.
        kept: video tokens fed to the LM; total: video tokens of the unpruned prompt.
        seconds: wall seconds of "vision", "prune", "prefill" and "decode".
    """

    text: str
    token_ids: np.ndarray
    kept: int
    total: int
    seconds: dict

    def summary(self) -> str:
        """The one line printed after the answer."""
        share = f"{self.kept / self.total:.0%}" if self.total else "no video tokens"
        times = ", ".join(f"{k} {v:.3f}" for k, v in self.seconds.items())
        return (f"kept {self.kept} of {self.total} video tokens ({share}); seconds: {times} "
                f"(compilation included)")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register `ask` on a `parser.add_subparsers()` object; returns its parser."""
    from tfs_jax import baselines

    parser = subparsers.add_parser(
        "ask", help=f"answer a question about a video with a VLM checkpoint (model_type "
                    f"{', '.join(FAMILIES)})",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="a checkpoint folder as on the hub: config.json, *.safetensors, "
                             "tokenizer.json, the chat template, preprocessor_config.json")
    parser.add_argument("video", metavar="VIDEO", help="any file FFmpeg (PyAV) reads")
    parser.add_argument("question")
    parser.add_argument("--ratio", type=float, default=None,
                        help="share of video tokens kept (0, 1]; unpruned when absent")
    parser.add_argument("--method", default=None, choices=("tfs",) + tuple(baselines.RULES),
                        help="pruner (default tfs; needs --ratio)")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    parser.add_argument("--dtype", default="checkpoint", choices=DTYPES,
                        help="weights' dtype (default: the checkpoint's)")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run a parsed `ask` command: print the answer and the summary line; 0 on success.
    Bad input raises ValueError before any program runs."""
    from tfs_jax.compile_cache import enable_compile_cache  # noqa: PLC0415  (jax config)

    enable_compile_cache()  # a second question to the same model skips the compiles
    result = ask(args.model, args.video, args.question, ratio=args.ratio, method=args.method,
                 max_new_tokens=args.max_new_tokens, dtype=args.dtype)
    print(result.text)
    print(result.summary())
    return 0


def main(argv: list[str] | None = None) -> int:
    """`ask` on its own (`python -m tfs_jax.ask ...`): bad input is one stderr line, exit 2."""
    parser = argparse.ArgumentParser(prog="tfs-jax")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ask", *(sys.argv[1:] if argv is None else argv)])
    try:
        return run(args)
    except (ValueError, ImportError) as err:
        print(f"tfs-jax: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2


def ask(
    model_dir, video_path, question: str, *, ratio: float | None = None,
    method: str | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    dtype: str = "checkpoint", progress: bool = True,
) -> Answer:
    """Answer `question` about the video at `video_path` with the checkpoint in `model_dir`
    (module docstring, steps 1-4).

    Raises:
        ValueError: a bad folder, checkpoint, tokenizer, template or video; `ratio` outside
            (0, 1]; `method` without `ratio`; `max_new_tokens < 1`; an unknown `dtype`.
    """
    prune, retain_ratio = _prune_choice(ratio, method, max_new_tokens)
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} must be one of {DTYPES}")
    import jax.numpy as jnp

    from tfs_jax import models
    from tfs_jax.models import chat

    # Every cheap check (folder, tokenizer, template, processor config, video) before the
    # weights are read: bad input fails in a second, not after a multi-GB load.
    family = family_of(model_dir)
    tokens = chat.Chat.from_dir(model_dir)
    req = family.request(model_dir, video_path, question, tokens, progress=progress)
    model = models.load(model_dir, dtype=None if dtype == "checkpoint" else jnp.dtype(dtype))
    ids, seconds, kept = _generate(family, model, req, prune, retain_ratio, max_new_tokens,
                                   _eos(model_dir), progress)
    return Answer(tokens.decode(ids), ids, kept, req.total, seconds)


def family_of(model_dir):
    """The `FAMILIES` module of the checkpoint's `model_type`; a missing folder or a missing,
    unreadable or unsupported `config.json` raises ValueError (before any weight is read)."""
    import importlib

    from tfs_jax.models.loader import read_config

    kind = read_config(model_dir)["model_type"]
    if kind not in FAMILIES:
        raise ValueError(f"tfs-jax ask does not serve model_type={kind!r}; it serves "
                         f"{', '.join(FAMILIES)}")
    return importlib.import_module(FAMILIES[kind])


def _prune_choice(ratio, method, max_new_tokens):
    """`(prune, retain_ratio)` for `Model.prune_videos` from the command's options."""
    from tfs_jax import baselines
    from tfs_jax.config import TFSConfig

    if max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens={max_new_tokens} must be >= 1")
    if ratio is None:
        if method is not None:
            raise ValueError(f"--method {method} needs --ratio")
        return None, None
    if not 0 < ratio <= 1:
        raise ValueError(f"--ratio={ratio} must be in (0, 1]")
    if method in (None, "tfs"):
        return TFSConfig(retain_ratio=ratio), None
    if method not in baselines.RULES:
        raise ValueError(f"--method {method!r} must be tfs or one of {tuple(baselines.RULES)}")
    return method, ratio


def _generate(family, model, req: Request, prune, retain_ratio, max_new_tokens, eos, progress):
    """The stages, timed: `(token ids, seconds by stage, video tokens kept)`."""
    from tfs_jax.models.lm import cache_length

    clock = _Clock()
    embeds = clock("vision", lambda: family.vision(model, req.media))
    pruned = clock("prune", lambda: family.prune(model, embeds, req.media, prune=prune,
                                                 retain_ratio=retain_ratio))

    def prefill():
        prompt = family.prompt(model, req.input_ids, embeds, req.media, pruned)
        return model.prefill(prompt, logits="last", cache_len=cache_length(prompt, max_new_tokens))

    logits, cache, _ = clock("prefill", prefill)
    start = time.perf_counter()
    ids = _greedy(model, logits, cache, max_new_tokens, eos, progress)
    clock.seconds["decode"] = time.perf_counter() - start
    kept = int(np.sum(pruned.keep_mask)) if pruned is not None else req.total
    return ids, clock.seconds, kept


def _greedy(model, logits, cache, max_new_tokens, eos, progress) -> np.ndarray:
    """`lm.greedy` (the loop of `Model.generate`) with a progress bar on stderr."""
    from tqdm.auto import tqdm

    from tfs_jax.models.lm import greedy

    with tqdm(total=max_new_tokens, desc="decode", unit="token", disable=not progress,
              leave=False, file=sys.stderr) as bar:
        return greedy(model, logits, cache, max_new_tokens, eos, on_token=lambda _: bar.update(1))


class _Clock:
    """Runs a stage, blocks on its arrays and records its wall time."""

    def __init__(self):
        self.seconds = {}

    def __call__(self, name, stage):
        import jax

        start = time.perf_counter()
        out = jax.block_until_ready(stage())
        self.seconds[name] = time.perf_counter() - start
        return out


def _eos(model_dir) -> set:
    """The ids that end an answer: `generation_config.json`'s `eos_token_id` (what
    transformers' `generate` stops on), else `config.json`'s."""
    for name in ("generation_config.json", "config.json"):
        file = pathlib.Path(model_dir) / name
        try:
            raw = json.loads(file.read_text()) if file.is_file() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{file} is not valid JSON: {err}") from None
        eos = raw.get("eos_token_id", raw.get("text_config", {}).get("eos_token_id"))
        if eos is not None:
            return set(int(e) for e in np.atleast_1d(eos))
    return set()


def status(message: str, progress: bool) -> None:
    """A progress line on stderr (families' `request` report what they read)."""
    if progress:
        print(f"tfs-jax: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
