"""transformers' InternVL (4.52.4) as the reference, run in its own interpreter.

`InternVLForConditionalGeneration` first appears in transformers 4.52, and the main test
environment pins 4.51.3 (Qwen2.5-VL's fractional-time rope rule). So this script runs under
the second pinned environment (`.venv-ref452`, see pyproject's `internvl-ref` extra) in a
subprocess, and talks to the JAX tests through files only:

    python tests/_internvl_reference.py build DIR   # checkpoints, inputs, unpruned outputs
    python tests/_internvl_reference.py lm DIR      # the LM fed kept embeddings (DIR/lm_request.npz)
    python tests/_internvl_reference.py process DIR # GotOcr2ImageProcessor on DIR/frames.npz
    python tests/_internvl_reference.py text DIR    # chat template and video placeholders

`build` writes, per tiny config (`CONFIGS`), a checkpoint `DIR/<name>/` with
`save_pretrained(max_shard_size=...)` (sharded) and `DIR/<name>.npz`: the inputs (pixel values
of several frames, a prompt with text on both sides of the video), the projected vision
features, every hidden state, the logits, and 16 greedy tokens with each step's scores.

transformers 4.52.4 bug worked around here: whenever `vision_feature_layer != -1`,
`InternVLModel.get_image_features` reads `self.vision_model` (which does not exist; the tower
is `self.vision_tower`) and indexes its `hidden_states` without asking for them (None). The
script aliases the attribute and sets the tower's `output_hidden_states`, which runs the code
path the authors meant (the feature layer's hidden state, no final layernorm); nothing else
is patched.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

TRANSFORMERS_VERSION = "4.52.4"
VOCAB = 200
IMAGE, IMG_START, IMG_END, NEWLINE = 150, 151, 152, 13
FRAMES, IMAGE_SIZE, PATCH = 3, 112, 14       # 8 x 8 patches, shuffled to 4 x 4 = 16 tokens a frame
TOKENS_PER_FRAME = (IMAGE_SIZE // PATCH // 2) ** 2
MAX_NEW = 16

TEXT = dict(model_type="qwen3", vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            rope_theta=10000.0, rms_norm_eps=1e-6, max_position_embeddings=1024,
            attention_bias=False, use_sliding_window=False, sliding_window=None, bos_token_id=1, eos_token_id=None, pad_token_id=0)
VISION = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
              image_size=[IMAGE_SIZE, IMAGE_SIZE], patch_size=[PATCH, PATCH], layer_norm_eps=1e-6)
# Two configs cover both norms, both attention variants, both feature-layer paths, tied and not.
CONFIGS = {
    "ln": dict(vision=dict(norm_type="layer_norm", use_qk_norm=False, attention_bias=True,
                           use_mean_pooling=True), vision_feature_layer=-2, tied=True),
    "rms": dict(vision=dict(norm_type="rms_norm", use_qk_norm=True, attention_bias=False,
                            use_mean_pooling=False), vision_feature_layer=-1, tied=False),
}


def prompt_ids(frames: int = FRAMES) -> np.ndarray:
    """Text, then `Frame{i}: <img> ctx*16 </img>` joined by newlines, then text."""
    parts = [[1, 40, 41, 42, 43]]
    for i in range(frames):
        if i:
            parts.append([NEWLINE])
        parts.append([60 + i, 58, IMG_START] + [IMAGE] * TOKENS_PER_FRAME + [IMG_END])
    parts.append([NEWLINE, 70, 71, 72, 73, 74])
    return np.concatenate(parts).astype(np.int64)


def hf_config(name: str):
    from transformers import InternVLConfig

    spec = CONFIGS[name]
    text = dict(TEXT, tie_word_embeddings=spec["tied"])
    return InternVLConfig(vision_config=dict(VISION, **spec["vision"]), text_config=text,
                          image_token_id=IMAGE, image_seq_length=TOKENS_PER_FRAME, downsample_ratio=0.5,
                          vision_feature_layer=spec["vision_feature_layer"], tie_word_embeddings=spec["tied"],
                          torch_dtype="float32")


def randomise(model, seed: int) -> None:
    """Redraw every parameter (transformers initialises biases to 0, norms and layer scales to
    constants, which would leave their name maps untested)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            elif "lambda" in name:
                p.copy_(0.5 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.05 * noise)
            elif "embed_tokens" in name or "cls_token" in name or "position_embeddings" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.08 * noise)


def _model(folder: Path, name: str, seed: int):
    import torch
    from transformers import InternVLForConditionalGeneration

    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(hf_config(name)).eval()
    randomise(model, seed)
    model.save_pretrained(folder, max_shard_size="100KB")
    model.model.vision_model = model.model.vision_tower  # the 4.52.4 bug (module docstring)
    model.model.vision_tower.config.output_hidden_states = True
    return model


def build(root: Path) -> None:
    import torch

    for seed, name in enumerate(CONFIGS):
        model = _model(root / name, name, seed)
        ids = prompt_ids()
        pixels = np.random.default_rng(seed).normal(size=(FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
        with torch.no_grad():
            t_ids, t_pix = torch.from_numpy(ids)[None], torch.from_numpy(pixels)
            cfg = model.config
            features = model.model.get_image_features(t_pix, cfg.vision_feature_layer,
                                                      cfg.vision_feature_select_strategy)
            out = model(input_ids=t_ids, pixel_values=t_pix, output_hidden_states=True)
            gen = model.generate(input_ids=t_ids, pixel_values=t_pix, max_new_tokens=MAX_NEW,
                                 do_sample=False, output_scores=True, return_dict_in_generate=True,
                                 eos_token_id=None, pad_token_id=0, min_new_tokens=MAX_NEW)
            embeds = model.get_input_embeddings()(t_ids)
            embeds = embeds.masked_scatter((t_ids == IMAGE)[..., None].expand_as(embeds),
                                           features.reshape(-1, features.shape[-1]))
        np.savez(root / f"{name}.npz", input_ids=ids, pixel_values=pixels,
                 features=features.numpy(), hidden=torch.stack(out.hidden_states)[:, 0].numpy(),
                 logits=out.logits[0].numpy(), tokens=gen.sequences[0, len(ids):].numpy(),
                 scores=torch.stack(gen.scores)[:, 0].numpy(), embeds=embeds[0].numpy())


def lm(root: Path) -> None:
    """`DIR/lm_request.npz` holds, per config `<name>`, `<name>/<case>/slots` (kept prompt
    slots) and `.../positions`; writes `DIR/lm_reply.npz` with the logits of transformers'
    language model fed those rows of its own prompt embeddings at those 1-D positions."""
    import torch
    from transformers import InternVLForConditionalGeneration

    request = np.load(root / "lm_request.npz")
    reply = {}
    for key in {k.rsplit("/", 1)[0] for k in request.files}:
        name = key.split("/")[0]
        model = InternVLForConditionalGeneration.from_pretrained(root / name, torch_dtype=torch.float32).eval()
        embeds = torch.from_numpy(np.load(root / f"{name}.npz")["embeds"])
        slots = torch.from_numpy(request[f"{key}/slots"])
        positions = torch.from_numpy(request[f"{key}/positions"])[None]
        with torch.no_grad():
            hidden = model.model.language_model(inputs_embeds=embeds[slots][None], position_ids=positions).last_hidden_state
            reply[key] = model.lm_head(hidden)[0].numpy()
    np.savez(root / "lm_reply.npz", **reply)


def process(root: Path) -> None:
    """`GotOcr2ImageProcessor` at 448 px, whole frame (`crop_to_patches=False`), ImageNet mean
    and std (InternVL3.5's), frame by frame on `DIR/frames.npz`'s uint8 clips."""
    from transformers import GotOcr2ImageProcessor

    proc = GotOcr2ImageProcessor(size={"height": 448, "width": 448}, crop_to_patches=False,
                                 image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    clips = np.load(root / "frames.npz")
    out = {k: np.concatenate([proc(images=[f], return_tensors="np")["pixel_values"] for f in clips[k]])
           for k in clips.files}
    np.savez(root / "processed.npz", **out)


def text(root: Path) -> None:
    """`DIR/text.json` {"model", "question", "frames"}: the checkpoint's chat template through
    its tokenizer's `apply_chat_template`, then `InternVLProcessor`'s placeholder expansion
    (its video processor needs torchvision, so the method runs on a bare processor holding
    the tokens it reads), and the ids; written to `DIR/text_out.json`."""
    import json

    from transformers import AutoConfig, InternVLProcessor, PreTrainedTokenizerFast

    spec = json.loads((root / "text.json").read_text())
    tok = PreTrainedTokenizerFast.from_pretrained(spec["model"])
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": spec["question"]}]}]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    config = AutoConfig.from_pretrained(spec["model"])
    proc = object.__new__(InternVLProcessor)
    proc.image_seq_length, proc.video_token = config.image_seq_length, "<video>"
    proc.start_image_token, proc.end_image_token, proc.image_token = "<img>", "</img>", "<IMG_CONTEXT>"
    frames = spec["frames"]
    expanded = proc._insert_media_placeholders(
        [rendered], None, np.zeros((frames, 1)), [], [1] * frames, np.array([0]),
        np.cumsum([1] * frames), np.array([frames]))[0][0]
    (root / "text_out.json").write_text(json.dumps({"rendered": rendered, "expanded": expanded,
                                                    "ids": tok(expanded)["input_ids"]}))


if __name__ == "__main__":
    import transformers

    if transformers.__version__ != TRANSFORMERS_VERSION:
        sys.exit(f"the InternVL reference needs transformers=={TRANSFORMERS_VERSION}, found {transformers.__version__}")
    {"build": build, "lm": lm, "process": process, "text": text}[sys.argv[1]](Path(sys.argv[2]))
