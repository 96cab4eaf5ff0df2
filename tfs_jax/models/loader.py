"""The one checkpoint loader: a folder of `config.json` and safetensors shards to a `Model`.

Everything that can be checked is checked before any weight is read: the folder, the config,
the model type, every shard's presence and header (the safetensors library rejects a
truncated file), and every tensor's name, shape and dtype against what the config implies.
Then shards are read one at a time and converted tensor by tensor into the family's param
pytree (layers stacked on a leading axis), so peak host memory is one copy of the weights.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np

SUPPORTED_MODEL_TYPES = ("qwen2_5_vl", "llava_onevision", "internvl")
_FAMILIES = {
    "qwen2_5_vl": "tfs_jax.models.qwen2_5_vl",
    "llava_onevision": "tfs_jax.models.llava_onevision",
    "internvl": "tfs_jax.models.internvl",
}
_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": "bfloat16"}
_TORCH_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


def load(path, *, dtype=None, progress: bool = False):
    """Load a checkpoint folder into the family's `Model`.

    Args:
      path: a folder holding `config.json` and `model.safetensors`, or shards listed by
        `model.safetensors.index.json` (as `save_pretrained` writes them).
      dtype: cast every weight to it (e.g. `jnp.bfloat16`, `jnp.float32`); `None` keeps
        the checkpoint's dtype.
      progress: a tqdm bar over the tensors as they are converted (needs tqdm).

    Returns:
      The family's `Model` (`.config`, `.params`).

    Raises:
      ValueError (one line): no such folder, a file instead of a folder, no or bad
        config.json, an unsupported model_type, a missing or truncated shard, a tensor
        missing, unexpected, of the wrong shape or dtype.
    """
    folder = _check_folder(path)
    raw = _read_config(folder)
    family = importlib.import_module(_FAMILIES[raw["model_type"]])
    config = family.config_from_dict(raw)
    headers = {shard: _read_header(shard) for shard in _shard_files(folder)}
    _check_tensors(headers, family, config)
    params = _convert(headers, family, config, dtype, _bar(folder, headers, progress))
    return family.Model(config, params)


def read_config(path) -> dict:
    """A checkpoint folder's `config.json`, checked as `load` checks it (a readable JSON
    object of a supported `model_type`) without reading any weights."""
    return _read_config(_check_folder(path))


def _check_folder(path) -> Path:
    folder = Path(os.fspath(path))
    if not folder.exists():
        raise ValueError(f"model path {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise ValueError(f"model path {str(folder)!r} is a file, not a checkpoint folder")
    if not (folder / "config.json").is_file():
        raise ValueError(f"model folder {str(folder)!r} has no config.json")
    return folder


def _read_config(folder: Path) -> dict:
    try:
        raw = json.loads((folder / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{folder / 'config.json'} is not readable JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{folder / 'config.json'} must hold a JSON object")
    kind = raw.get("model_type")
    if kind not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model_type={kind!r} in {folder / 'config.json'} is not supported; "
                         f"supported: {', '.join(SUPPORTED_MODEL_TYPES)}")
    return raw


def _shard_files(folder: Path) -> list[Path]:
    """The shards, from the index when there is one; each must exist."""
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{index} is not a safetensors index (weight_map): {err}") from None
        shards = sorted({folder / name for name in weight_map.values()})
    elif (folder / SINGLE_FILE).is_file():
        shards = [folder / SINGLE_FILE]
    else:
        raise ValueError(f"model folder {str(folder)!r} has neither {SINGLE_FILE} nor {INDEX_FILE}")
    for shard in shards:
        if not shard.is_file():
            raise ValueError(f"shard {shard.name} listed in {INDEX_FILE} is missing from {str(folder)!r}")
    return shards


def _read_header(shard: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """`{name: (shape, dtype)}` of a shard; a truncated or damaged file raises ValueError."""
    from safetensors import safe_open  # noqa: PLC0415  (the loader's only heavy import)

    try:
        with safe_open(shard, framework="numpy") as handle:
            return {name: (tuple(handle.get_slice(name).get_shape()), handle.get_slice(name).get_dtype())
                    for name in handle.keys()}
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError)
        raise ValueError(f"shard {shard.name} is truncated or not a safetensors file: {err}") from None


def _check_tensors(headers: dict, family, config) -> None:
    """Names, shapes and dtypes of every tensor against what the config implies."""
    expected = family.expected_tensors(config)
    found = {}
    for shard, header in headers.items():
        for name, (shape, kind) in header.items():
            found[family.canonical_name(name)] = (shape, kind, shard.name)
    if config.tie_word_embeddings:
        found.pop("lm_head.weight", None)  # a tied head some writers store anyway
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} tensor(s), first {missing[0]!r}")
    if extra:
        raise ValueError(f"checkpoint has {len(extra)} unexpected tensor(s), first {extra[0]!r}")
    want_dtype = _TORCH_DTYPES.get(config.torch_dtype)
    for name, (shape, kind, shard) in found.items():
        if shape != expected[name]:
            raise ValueError(f"tensor {name!r} in {shard} has shape {shape}, expected {expected[name]}")
        if kind not in _DTYPES or (want_dtype and kind != want_dtype):
            raise ValueError(f"tensor {name!r} in {shard} has dtype {kind}, expected "
                             f"{want_dtype or 'a float type'} (config torch_dtype={config.torch_dtype!r})")


def _bar(folder: Path, headers: dict, progress: bool):
    """A tqdm bar over every tensor, or a no-op without `progress`."""
    if not progress:
        return lambda: None
    from tqdm.auto import tqdm  # noqa: PLC0415

    bar = tqdm(total=sum(len(h) for h in headers.values()), desc=f"load {folder.name}", unit="tensor")
    return lambda: bar.update(1) if bar.n + 1 < bar.total else (bar.update(1), bar.close())


def _convert(headers: dict, family, config, dtype, tick) -> dict:
    """Read shard by shard, convert tensor by tensor, place into the stacked pytree."""
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415
    from safetensors import safe_open  # noqa: PLC0415

    tree: dict = {}
    expected = family.expected_tensors(config)
    for shard, header in headers.items():
        offsets = _offsets(shard)  # read now, not cached: a shard may be rewritten in place
        with safe_open(shard, framework="numpy") as handle:
            for name in header:
                tick()
                canonical = family.canonical_name(name)
                if canonical not in expected:
                    continue  # a tied lm_head stored anyway
                path, index, how = family.tree_slot(canonical)
                array = family.convert(_tensor(handle, shard, offsets, name, header[name]), how)
                if dtype is not None:
                    array = array.astype(jnp.dtype(dtype))
                _place(tree, path, index, array, family.stack_size(config, path))
    return jax.tree.map(jnp.asarray, tree)


def _tensor(handle, shard: Path, offsets: dict, name: str, info) -> np.ndarray:
    """One tensor as numpy; bfloat16 (which numpy lacks) is read as `ml_dtypes.bfloat16`."""
    shape, kind = info
    if kind != "BF16":
        return handle.get_tensor(name)
    import ml_dtypes  # noqa: PLC0415  (ships with jax)

    start, end = offsets[name]
    with open(shard, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    return np.frombuffer(data, ml_dtypes.bfloat16).reshape(shape)


def _offsets(shard: Path) -> dict[str, tuple[int, int]]:
    """Absolute byte ranges of a shard's tensors (the header was validated by safetensors)."""
    with open(shard, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    base = 8 + size
    return {k: (base + v["data_offsets"][0], base + v["data_offsets"][1])
            for k, v in header.items() if k != "__metadata__"}


def _place(tree: dict, path: tuple, index, array: np.ndarray, stack: int) -> None:
    """Put `array` at `path` (into row `index` of a stacked leaf of `stack` rows)."""
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if index is None:
        node[path[-1]] = array
        return
    if path[-1] not in node:
        node[path[-1]] = np.empty((stack,) + array.shape, array.dtype)
    node[path[-1]][index] = array
