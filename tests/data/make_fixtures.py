"""Regenerate the Qwen2.5-VL fixtures of tests/data/ with transformers 4.51.3 (torch 2.13.0).

    PYTHONPATH=. python tests/data/make_fixtures.py

Writes, deterministically (a fixed torch seed, a tokenizer trained on a fixed corpus):

* `tiny-qwen2.5-vl/`: a Qwen2.5-VL checkpoint folder as on the hub, written by
  transformers itself: `Qwen2_5_VLForConditionalGeneration(config).save_pretrained` in
  bfloat16 (as the real checkpoints), sharded in two with `model.safetensors.index.json`,
  tied `lm_head`; a byte-level BPE tokenizer with Qwen's special tokens, wrapped in
  `Qwen2TokenizerFast`; `Qwen2_5_VLProcessor.save_pretrained` for the processor's files.
  The multimodal chat template (Qwen2.5-VL-Instruct's) goes to `chat_template.json`, the
  processor's file; `tokenizer_config.json` holds a different, text-only template, as the
  real checkpoints do, so that reading the wrong file shows.
* `tiny_clip.mp4`: 45 frames of 84x112 at 12 fps (a square moving over a gradient), H.264;
  qwen-vl-utils samples 6 of them at 1.6 fps, so `second_per_grid_ts` is 1.25 and the grid
  has 3 temporal slices (their times 0, 2.5 -> 2, 5: a truncation 1.0 would not give).
* `qwen2_5_vl_4.51.3.npz`: for one prompt with that clip (sampled as qwen-vl-utils does,
  then transformers' own processor and chat template): the frames, the input ids, the
  processor's grid and `second_per_grid_ts`, the float32 logits of the checkpoint read
  back in float32, and `generate(do_sample=False)`'s 8 new tokens.
* `qwen2_5_vl_rope_4.51.3.json`: `get_rope_index` of 4.51.3 on the rope cases of
  tests/test_serving_rope.py (with the START/END markers transformers finds runs by),
  fractional `second_per_grid_ts` included. From 4.52 on transformers truncates
  `second_per_grid_ts` to an integer there; these keep the rule the models were trained with.

The tests that read these files need neither torch nor transformers.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
CHECKPOINT = HERE / "tiny-qwen2.5-vl"
CLIP = HERE / "tiny_clip.mp4"
OUTPUTS = HERE / "qwen2_5_vl_4.51.3.npz"
ROPE = HERE / "qwen2_5_vl_rope_4.51.3.json"
QUESTION = "What is moving in this video?"
NEW_TOKENS = 8

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
           "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
# Qwen2.5-VL-Instruct's multimodal template (its chat_template.json).
VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# A text-only template in tokenizer_config.json (the real checkpoints carry Qwen2.5's).
TEXT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{{ raise_exception('text only') }}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "You are a helpful assistant.", "What is moving in this video?", "Describe the video.",
    "A red square moves from the left to the right over a blue and green background.",
    "The camera is still; a bicycle rider crosses the street. What happens next?",
    "system user assistant", "How many objects are there? Answer in one word.",
]


def tokenizer(special=SPECIAL, corpus=CORPUS):
    """A byte-level BPE (every text encodes, as Qwen's does) with Qwen's special tokens
    (or `special`, trained on `corpus`: make_internvl_fixtures.py's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=list(special), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(corpus) * 4, trainer)
    return tok


def config(ids: dict):
    import transformers

    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                  fullatt_block_indexes=[1], out_hidden_size=64, tokens_per_second=2)
    return transformers.Qwen2_5_VLConfig(
        vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}, tie_word_embeddings=True,
        vision_config=vision, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        initializer_range=0.15, torch_dtype="bfloat16")


def write_checkpoint(transformers, torch):
    tok = tokenizer()
    ids = {t: tok.token_to_id(t) for t in SPECIAL}
    # Seed 4: greedy tokens that vary, each ahead of the runner-up by at least 0.17 (seeds
    # 0-5 tried), so float32 rounding differences (~1e-5) cannot flip a token.
    torch.manual_seed(4)
    model = transformers.Qwen2_5_VLForConditionalGeneration(config(ids)).to(torch.bfloat16)
    model.generation_config.do_sample = False
    model.save_pretrained(CHECKPOINT, max_shard_size="200KB")
    hf_tok = transformers.Qwen2TokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, bos_token=None, additional_special_tokens=SPECIAL[1:],
        chat_template=TEXT_TEMPLATE)
    image_processor = transformers.Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=12544)
    processor = transformers.Qwen2_5_VLProcessor(image_processor=image_processor,
                                                 tokenizer=hf_tok, chat_template=VL_TEMPLATE)
    processor.save_pretrained(CHECKPOINT)


def write_clip():
    """A red square crossing a gradient: 45 frames, 84x112, 12 fps, libx264 (one thread)."""
    import av

    y, x = np.mgrid[0:84, 0:112]
    with av.open(str(CLIP), "w") as container:
        stream = container.add_stream("libx264", rate=12, options={"crf": "18", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = 112, 84, "yuv420p"
        for i in range(45):
            frame = np.stack([x * 2, y * 3, 255 - x * 2], -1).astype(np.uint8)
            frame[30:54, 2 * i:24 + 2 * i] = (230, 20, 20)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_outputs(transformers, torch):
    from tfs_jax import video

    sampled = video.sample_video(CLIP, progress=False)
    processor = transformers.AutoProcessor.from_pretrained(CHECKPOINT)
    messages = [{"role": "user", "content": [{"type": "video"},
                                             {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], videos=[sampled.frames], fps=sampled.fps,
                       return_tensors="pt")
    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(
        CHECKPOINT, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(**inputs).logits[0]
        generated = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    np.savez_compressed(
        OUTPUTS, frames=sampled.frames, indices=sampled.indices, fps=sampled.fps,
        text=np.array(text), input_ids=inputs["input_ids"][0].numpy(),
        video_grid_thw=inputs["video_grid_thw"].numpy(),
        second_per_grid_ts=np.array(inputs["second_per_grid_ts"], np.float64),
        logits=logits.numpy().astype(np.float32),
        generated=generated[0, inputs["input_ids"].shape[1]:].numpy())


START, END, IMAGE, VIDEO = 6, 7, 8, 9
V, I = [VIDEO], [IMAGE]
# (name, input ids, video grids, image grids, second_per_grid_ts, tokens_per_second): the
# Qwen2.5 cases of tests/test_serving_rope.py's table with Qwen's markers around each run.
ROPE_CASES = [
    ("one video", [1, 2, START] + V * 4 + [END, 3], [[2, 2, 4]], None, [1.0], 2),
    ("two videos", [1, START] + V * 4 + [END, START] + V * 2 + [END, 2],
     [[1, 4, 4], [2, 2, 2]], None, [1.0, 1.0], 2),
    ("time scaling, step 2.5", [1, START] + V * 3 + [END, 2, 3], [[3, 2, 2]], None, [1.25], 2),
    ("time scaling, step 0.5", [START] + V * 4 + [END, 1], [[4, 2, 2]], None, [0.25], 2),
    ("float32 order", [1, START] + V * 7 + [END], [[7, 2, 2]], None, [0.7], 25),
    ("image then video", [1, START] + I * 4 + [END, 2, START] + V * 2 + [END, 3],
     [[2, 2, 2]], [[1, 4, 4]], [0.5], 2),
    ("video then image", [START] + V * 2 + [END, 1, START] + I * 4 + [END, 2],
     [[2, 2, 2]], [[1, 4, 4]], [1.0], 2),
    ("ends with video", [1, 2, START] + V * 4 + [END], [[2, 2, 4]], None, [1.25], 2),
    ("one third", [1, START] + V * 6 + [END, 4], [[6, 2, 2]], None, [1 / 3], 4),
    ("five thirds", [1, START] + V * 5 + [END, 4], [[5, 2, 2]], None, [5 / 3], 4),
    ("sampled carphone rate", [1, START] + V * 4 + [END, 4], [[4, 2, 2]], None,
     [2 / (8 / 120 * 30000 / 1001)], 2),
]


def write_rope(transformers, torch):
    tiny = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, vocab_size=16,
                rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]},
                image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=START,
                vision_end_token_id=END)
    cases = []
    for name, ids, videos, images, seconds, tps in ROPE_CASES:
        vision = dict(depth=1, hidden_size=16, num_heads=2, intermediate_size=16,
                      out_hidden_size=16, fullatt_block_indexes=[0], tokens_per_second=tps)
        with torch.device("meta"):
            model = transformers.Qwen2_5_VLForConditionalGeneration(
                transformers.Qwen2_5_VLConfig(**tiny, vision_config=vision))
        seconds32 = np.array(seconds, np.float32)  # as the processor's tensor holds them
        positions, delta = model.get_rope_index(
            torch.tensor([ids]), None if images is None else torch.tensor(images),
            torch.tensor(videos), second_per_grid_ts=torch.from_numpy(seconds32))
        cases.append({"name": name, "input_ids": ids, "video_grid_thw": videos,
                      "image_grid_thw": images, "second_per_grid_ts": seconds32.tolist(),
                      "tokens_per_second": tps, "video_token_id": VIDEO, "image_token_id": IMAGE,
                      "positions": positions[:, 0].tolist(), "rope_delta": int(delta[0, 0])})
    ROPE.write_text(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__,
                                "cases": cases}, indent=1) + "\n")


def reference_modules():
    """`(transformers, torch)` with torch's deterministic algorithms on; None, with a line on
    stderr, when transformers is not 4.51.3 (the version every fixture here records)."""
    import torch
    import transformers

    if transformers.__version__ != "4.51.3":
        print(f"the fixtures are transformers 4.51.3's, found {transformers.__version__}",
              file=sys.stderr)
        return None
    torch.use_deterministic_algorithms(True)
    return transformers, torch


def main() -> int:
    modules = reference_modules()
    if modules is None:
        return 2
    write_checkpoint(*modules)
    write_clip()
    write_outputs(*modules)
    write_rope(*modules)
    return 0


if __name__ == "__main__":
    sys.exit(main())
