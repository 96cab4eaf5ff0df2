"""Regenerate tests/data/tiny-internvl/ with transformers 4.52.4 (the `.venv-ref452` interpreter).

    .venv-ref452/bin/python tests/data/make_internvl_fixtures.py

Writes, deterministically (a fixed torch seed, a tokenizer trained on a fixed corpus), a
checkpoint folder as on the hub for `tfs-jax ask`:

* `InternVLForConditionalGeneration(config).save_pretrained` in bfloat16, sharded in two with
  `model.safetensors.index.json`, tied `lm_head`: an InternViT of 2 layers on 112-px tiles
  (8 x 8 patches, 16 LM tokens a frame after the pixel shuffle), a 2-layer Qwen3 LM;
* a byte-level BPE tokenizer with InternVL's special tokens (`<img>`, `</img>`,
  `<IMG_CONTEXT>`, `<video>`) and Qwen's chat tokens, wrapped in `PreTrainedTokenizerFast`
  (`tokenizer.json`, `tokenizer_config.json` holding the chat template);
* `GotOcr2ImageProcessor.save_pretrained` (`preprocessor_config.json`): 112 px,
  `crop_to_patches=False`, ImageNet mean and std, as InternVL3.5's processor (at 448 px).

The chat template writes `<video>\n` for a video, as InternVL3.5-HF's does; the processor
(and `tfs-jax ask`) expands it to `Frame{i}: <img><IMG_CONTEXT>...</img>` lines.
"""

from __future__ import annotations

import pathlib
import shutil
import sys

HERE = pathlib.Path(__file__).resolve().parent
CHECKPOINT = HERE / "tiny-internvl"
SIZE = 112
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<image>\n{% elif content['type'] == 'video' %}<video>\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "You are a helpful assistant.", "What is moving in this video?", "Describe the video.",
    "Frame1: Frame2: Frame3: Frame4: Frame5: Frame6: Frame7: Frame8:",
    "A red square moves from the left to the right over a blue and green background.",
    "system user assistant", "How many objects are there? Answer in one word.",
]


def tokenizer():
    """A byte-level BPE (every text encodes) with InternVL's and Qwen's special tokens."""
    sys.path.insert(0, str(HERE))
    import make_fixtures  # noqa: PLC0415  (the Qwen fixtures' tokenizer recipe, shared)

    return make_fixtures.tokenizer(SPECIAL, CORPUS)


def config(transformers, ids: dict):
    text = dict(model_type="qwen3", vocab_size=320, hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                max_position_embeddings=4096, tie_word_embeddings=True, use_sliding_window=False,
                sliding_window=None, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"], initializer_range=0.15)
    vision = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  image_size=[SIZE, SIZE], patch_size=[14, 14], initializer_range=0.15)
    return transformers.InternVLConfig(
        vision_config=vision, text_config=text, image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=(SIZE // 28) ** 2, tie_word_embeddings=True, torch_dtype="bfloat16")


def main() -> int:
    import torch
    import transformers

    if transformers.__version__ != "4.52.4":
        print(f"needs transformers 4.52.4, found {transformers.__version__}", file=sys.stderr)
        return 1
    shutil.rmtree(CHECKPOINT, ignore_errors=True)
    tok = tokenizer()
    ids = {t: tok.token_to_id(t) for t in SPECIAL}
    torch.manual_seed(0)
    model = transformers.InternVLForConditionalGeneration(config(transformers, ids)).to(torch.bfloat16)
    model.generation_config.do_sample = False
    model.save_pretrained(CHECKPOINT, max_shard_size="200KB")
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL[1:], chat_template=TEMPLATE).save_pretrained(CHECKPOINT)
    transformers.GotOcr2ImageProcessor(
        size={"height": SIZE, "width": SIZE}, crop_to_patches=False, image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225]).save_pretrained(CHECKPOINT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
