"""Regenerate the LLaVA-OneVision fixtures of tests/data/ with transformers 4.51.3.

    PYTHONPATH=. python tests/data/make_llava_fixtures.py

Writes, deterministically (a fixed torch seed, make_fixtures.py's tokenizer recipe):

* `tiny-llava-onevision/`: a LLaVA-OneVision checkpoint folder as on the hub, written by
  transformers itself: `LlavaOnevisionForConditionalGeneration(config).save_pretrained` in
  bfloat16, sharded in two, untied `lm_head`, SigLIP at 60 px with 8-px patches (a 7x7 grid
  pooled to 4x4, as 27x27 -> 14x14 at 384 px), `vision_feature_layer=-2`; a byte-level BPE
  tokenizer with the checkpoints' special tokens (`<image>`, `<video>`, ChatML), wrapped in
  `Qwen2TokenizerFast`; `LlavaOnevisionProcessor.save_pretrained` with the image and video
  processors at 60x60 and mean = std = 0.5, as the released checkpoints set them. The chat
  template, in the form of the released `-ov-hf` checkpoints' (role, images, videos, then
  the text after a newline; `{% generation %}` around assistant text), goes to
  `chat_template.json`.
* `llava_onevision_4.51.3.npz`: for one prompt on tests/data/tiny_clip.mp4 (the frames
  `tfs-jax ask` samples, then transformers' own processor and chat template): the frame indices, the text, the input ids, the float32 logits of the prompt's last
  `LOGIT_ROWS` tokens (the text after the video; the file stays small) of the checkpoint
  read back in float32, and `generate(do_sample=False)`'s 8 new tokens.

The tests that read these files need neither torch nor transformers.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from tests.data import make_fixtures  # noqa: E402
from tests.data.make_fixtures import CLIP, NEW_TOKENS, QUESTION  # noqa: E402

CHECKPOINT = HERE / "tiny-llava-onevision"
OUTPUTS = HERE / "llava_onevision_4.51.3.npz"
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
SIDE, PATCH = 60, 8
LOGIT_ROWS = 16
TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'image') %}{{ '<image>' }}{% endfor %}{# Render all video then #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + content['text'] }}{% endfor %}{% else %}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'text') %}{% generation %}{{ '\n' + content['text'] }}"
    "{% endgeneration %}{% endfor %}{% endif %}{{'<|im_end|>'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def tokenizer():
    """make_fixtures.py's byte-level BPE with LLaVA-OneVision's special tokens."""
    return make_fixtures.tokenizer(SPECIAL)


def config(transformers, ids: dict):
    vision = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                  image_size=SIDE, patch_size=PATCH, vision_use_head=False)
    text = dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                tie_word_embeddings=False, bos_token_id=ids["<|endoftext|>"],
                eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    return transformers.LlavaOnevisionConfig(
        vision_config=vision, text_config=text, image_token_index=ids["<image>"],
        video_token_index=ids["<video>"], vision_feature_layer=-2, tie_word_embeddings=False,
        torch_dtype="bfloat16")


def write_checkpoint(transformers, torch):
    from transformers.models.llava_onevision.video_processing_llava_onevision import (
        LlavaOnevisionVideoProcessor)

    tok = tokenizer()
    ids = {t: tok.token_to_id(t) for t in SPECIAL}
    torch.manual_seed(0)
    model = transformers.LlavaOnevisionForConditionalGeneration(config(transformers, ids))
    with torch.no_grad():  # redraw at a scale that makes the greedy tokens depend on the input
        for name, p in model.named_parameters():
            if "norm" not in name and not name.endswith("bias"):
                p.normal_(0, 0.5 if "embed_tokens" in name else 0.15)
    model = model.to(torch.bfloat16)
    model.generation_config.do_sample = False
    model.save_pretrained(CHECKPOINT, max_shard_size="200KB")
    hf_tok = transformers.Qwen2TokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        bos_token=None, additional_special_tokens=SPECIAL[1:])
    settings = dict(size={"height": SIDE, "width": SIDE}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = transformers.LlavaOnevisionProcessor(
        image_processor=transformers.LlavaOnevisionImageProcessor(**settings),
        video_processor=LlavaOnevisionVideoProcessor(**settings), tokenizer=hf_tok,
        num_image_tokens=(SIDE // PATCH) ** 2, vision_feature_select_strategy="full",
        chat_template=TEMPLATE)
    processor.save_pretrained(CHECKPOINT)


def write_outputs(transformers, torch):
    from tfs_jax import video
    from tfs_jax.models.llava_onevision.ask import FRAMES

    sampled = video.sample_video(CLIP, min_frames=FRAMES, max_frames=FRAMES, progress=False)
    processor = transformers.AutoProcessor.from_pretrained(CHECKPOINT)
    messages = [{"role": "user", "content": [{"type": "video"},
                                             {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], videos=[sampled.frames], return_tensors="pt")
    model = transformers.LlavaOnevisionForConditionalGeneration.from_pretrained(
        CHECKPOINT, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(**inputs).logits[0]
        generated = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    np.savez_compressed(
        OUTPUTS, indices=sampled.indices, text=np.array(text),
        input_ids=inputs["input_ids"][0].numpy(),
        logits=logits[-LOGIT_ROWS:].numpy().astype(np.float32),
        generated=generated[0, inputs["input_ids"].shape[1]:].numpy())
    for file in CHECKPOINT.glob("*.safetensors"):
        file.chmod(0o644)  # safetensors writes 0600; a clone should read them as any file


def main() -> int:
    modules = make_fixtures.reference_modules()
    if modules is None:
        return 2
    write_checkpoint(*modules)
    write_outputs(*modules)
    return 0


if __name__ == "__main__":
    sys.exit(main())
