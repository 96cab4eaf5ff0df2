"""A checkpoint's tokenizer and chat template, read and rendered as transformers 4.51.3 does.

Where the template comes from (first found wins), as `AutoProcessor.from_pretrained` and
`AutoTokenizer.from_pretrained` of 4.51.3 look for it in a local folder:

1. `chat_template.jinja`: the processor reads it before anything else, and the tokenizer
   lets it clobber `tokenizer_config.json`'s entry;
2. `chat_template.json`'s `"chat_template"`: the processor's own file;
3. `tokenizer_config.json`'s `"chat_template"`: the tokenizer's (a list of named templates
   picks `"default"`, as `get_chat_template` does).

It is rendered as `apply_chat_template` renders it (`utils/chat_template_utils.py`): a
sandboxed, immutable jinja2 environment with `trim_blocks`, `lstrip_blocks` and the
`loopcontrols` extension, the `{% generation %}` tag, `raise_exception`, `strftime_now` and a `tojson` that does not
escape HTML, with the tokenizer's special tokens (`bos_token`, `eos_token`, ...) as
variables. The processor then replaces each `<|video_pad|>` with `t h w / m^2` of them
(`Qwen2_5_VLProcessor.__call__`), and the text is encoded with the `tokenizers` library
from `tokenizer.json`, the file the fast tokenizer wraps.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib

import numpy as np

VIDEO_PAD = "<|video_pad|>"
IMAGE_PAD = "<|image_pad|>"
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                       "cls_token", "mask_token", "additional_special_tokens")


@dataclasses.dataclass(frozen=True)
class Chat:
    """A checkpoint's tokenizer (`tokenizers.Tokenizer`), chat template and special tokens."""

    tokenizer: object
    template: str
    special_tokens: dict

    @classmethod
    def from_dir(cls, path: str | os.PathLike) -> Chat:
        """Read `tokenizer.json`, the chat template (module docstring) and the special
        tokens of `tokenizer_config.json`.

        Raises:
            ValueError: no `tokenizer.json`, no chat template, or a file that does not parse.
        """
        from tokenizers import Tokenizer

        path = pathlib.Path(path)
        file = path / "tokenizer.json"
        if not file.is_file():
            raise ValueError(f"{path} has no tokenizer.json")
        try:
            tokenizer = Tokenizer.from_file(str(file))
        except Exception as err:  # tokenizers raises its own Exception type
            raise ValueError(f"{file} does not parse: {' '.join(str(err).split())}") from None
        config = _json(path / "tokenizer_config.json") or {}
        return cls(tokenizer, find_chat_template(path), _special_tokens(config))

    def render(self, messages: list, *, add_generation_prompt: bool = True) -> str:
        """The prompt text of `messages`, as `apply_chat_template(..., tokenize=False)`."""
        return render_chat_template(self.template, messages,
                                    add_generation_prompt=add_generation_prompt,
                                    **self.special_tokens)

    def encode(self, text: str) -> np.ndarray:
        """`(L,)` int32 token ids of `text` (special tokens matched whole)."""
        return np.asarray(self.tokenizer.encode(text).ids, dtype=np.int32)

    def decode(self, ids) -> str:
        """Text of `ids`, special tokens left out."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def token_id(self, token: str) -> int:
        """The id of a token of the vocabulary; ValueError when it has none."""
        index = self.tokenizer.token_to_id(token)
        if index is None:
            raise ValueError(f"the tokenizer has no token {token!r}")
        return int(index)


def video_question(question: str) -> list:
    """The one-turn conversation of a video and a question, as Qwen's model cards write it."""
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]


def find_chat_template(path: str | os.PathLike) -> str:
    """The chat template of a checkpoint folder, where transformers 4.51.3 finds it (module
    docstring); ValueError naming the three places when there is none."""
    path = pathlib.Path(path)
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        template = (_json(path / name) or {}).get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
            template = {t["name"]: t["template"] for t in template}.get("default")
        if template:
            return template
    raise ValueError(f"{path} has no chat template (chat_template.jinja, chat_template.json "
                     "or tokenizer_config.json's 'chat_template')")


def render_chat_template(template: str, messages: list, *, add_generation_prompt: bool = True,
                         **variables) -> str:
    """Render `template` as transformers' `_compile_jinja_template` sets jinja2 up."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # transformers' override: no HTML escaping, json.dumps's options
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_generation_extension(), jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    try:
        return env.from_string(template).render(
            messages=messages, tools=None, documents=None,
            add_generation_prompt=add_generation_prompt, **variables)
    except jinja2.exceptions.TemplateError as err:
        raise ValueError(f"the chat template fails: {err}") from None


def expand_placeholders(
    text: str, *, video_grid_thw=None, image_grid_thw=None, merge_size: int = 2,
) -> str:
    """Each `<|video_pad|>` (`<|image_pad|>`) of `text`, in order, repeated `t h w / m^2`
    times for its row of `video_grid_thw` (`image_grid_thw`), as the processor does.

    Raises:
        ValueError: the number of placeholders differs from the number of grid rows.
    """
    for pad, grids in ((VIDEO_PAD, video_grid_thw), (IMAGE_PAD, image_grid_thw)):
        grids = np.zeros((0, 3), np.int64) if grids is None else np.asarray(grids).reshape(-1, 3)
        pieces = text.split(pad)
        if len(pieces) - 1 != len(grids):
            raise ValueError(f"the prompt has {len(pieces) - 1} {pad} placeholders but "
                             f"{len(grids)} grids were given")
        counts = [int(np.prod(g)) // merge_size**2 for g in grids]
        text = pieces[0] + "".join(pad * n + rest for n, rest in zip(counts, pieces[1:]))
    return text


def _generation_extension():
    """`{% generation %}...{% endgeneration %}` (LLaVA-OneVision's templates mark the
    assistant's text with it): transformers' `AssistantTracker` renders the body unchanged
    (it only records where the body lands, for assistant masks), and so does this."""
    import jinja2.ext
    from jinja2 import nodes

    class Generation(jinja2.ext.Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    return Generation


def _special_tokens(config: dict) -> dict:
    """`special_tokens_map` of a tokenizer_config.json: the names set, as strings."""
    out = {}
    for name in SPECIAL_TOKEN_NAMES:
        value = config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, list):
            value = [v.get("content") if isinstance(v, dict) else v for v in value]
        if value:
            out[name] = value
    return out


def _json(file: pathlib.Path) -> dict | None:
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file} is not valid JSON: {err}") from None
