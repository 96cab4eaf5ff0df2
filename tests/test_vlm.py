"""Tests of tfs_jax/vlm/ on the tiny config: positions, masks, M-RoPE, FastV, cascade."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _needs import needs  # noqa: E402  (tests/_needs.py: the one skip rule)

needs("flax", why="the `vlm` extra")

import tfs_jax  # noqa: E402
from tfs_jax import baselines  # noqa: E402
from tfs_jax.baselines import fastv_select  # noqa: E402
from tfs_jax import vlm  # noqa: E402

CFG = vlm.VLMConfig.tiny()
GRID = (3, 4, 4)
PREFIX = jnp.array([5, 6, 7])
SUFFIX = jnp.array([8, 9, 10, 11])


@pytest.fixture(scope="module")
def params():
    return vlm.init_params(CFG, jax.random.key(0))


def _tokens(seed=1):
    """Test data from numpy: an eager `jax.random.normal` costs seconds of XLA compile."""
    shape = GRID + (CFG.vision_dim,)
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _holes():
    return jnp.ones(GRID, bool).at[1, 2].set(False).at[2, 0, 3].set(False)


# ------------------------------------------------------------------ positions, mask, rope


def test_sequence_positions_hand_case():
    pos = vlm.sequence_positions(jnp.array([[0, 1, 1]]), prefix_len=2, suffix_len=2, grid=(2, 2, 3))
    # Suffix starts after the full grid's largest position: 2 + max(1, 1, 2) + 1 = 5.
    assert pos.tolist() == [[0, 0, 0], [1, 1, 1], [2, 3, 3], [5, 5, 5], [6, 6, 6]]
    pos = vlm.sequence_positions(jnp.array([[3, 0, 1]]), prefix_len=1, suffix_len=1, grid=(4, 2, 2),
                                 temporal_stride=2)
    assert pos.tolist() == [[0, 0, 0], [7, 1, 2], [8, 8, 8]]  # t step 2; suffix at 1 + 6 + 1


def test_attention_mask_hand_case():
    mask = vlm.attention_mask(jnp.array([True, False, True, True]))
    assert mask.astype(int).tolist() == [
        [1, 0, 0, 0],
        [0, 1, 0, 0],  # padding: itself only
        [1, 0, 1, 0],
        [1, 0, 1, 1],
    ]


def test_mrope_bands_follow_sections():
    inv = 1.0 / 100.0 ** (np.arange(3) / 3)  # head_dim 6, theta 100
    cos, sin = vlm.mrope_cos_sin(jnp.array([[1, 2, 3]]), head_dim=6, theta=100.0, section=(1, 1, 1))
    angles = np.array([1, 2, 3]) * inv  # band 0 by t, band 1 by h, band 2 by w
    np.testing.assert_allclose(cos[0], np.cos(np.r_[angles, angles]), rtol=1e-6)
    np.testing.assert_allclose(sin[0], np.sin(np.r_[angles, angles]), rtol=1e-6)
    # A text token (p, p, p) gets plain 1-D RoPE whatever the sections.
    cos_a, _ = vlm.mrope_cos_sin(jnp.array([[4, 4, 4]]), head_dim=6, theta=100.0, section=(3, 0, 0))
    cos_b, _ = vlm.mrope_cos_sin(jnp.array([[4, 4, 4]]), head_dim=6, theta=100.0, section=(0, 1, 2))
    np.testing.assert_array_equal(cos_a, cos_b)


# ------------------------------------------------------------------ the pruned pipeline


def test_ratio_one_gives_the_unpruned_logits(params):
    result = baselines.uniform(_tokens(), 1.0)  # any pruner: TFS's own ratio-1 case is its test
    assert int(result.num_kept) == np.prod(GRID)
    full = vlm.prefill(params, _tokens(), PREFIX, SUFFIX, config=CFG)
    pruned = vlm.prefill(params, _tokens(), PREFIX, SUFFIX, config=CFG, result=result)
    np.testing.assert_allclose(pruned.logits, full.logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(pruned.positions, full.positions)


def test_kept_tokens_keep_original_positions(params):
    result = baselines.uniform(_tokens(), 0.25)
    kept = np.asarray(result.indices)[np.asarray(result.slot_valid)]
    out = vlm.prefill(params, _tokens(), PREFIX, SUFFIX, config=CFG, result=result)
    full = vlm.prefill(params, _tokens(), PREFIX, SUFFIX, config=CFG)
    p, k = len(PREFIX), result.indices.shape[0]
    t, h, w = np.unravel_index(kept, GRID)
    np.testing.assert_array_equal(out.positions[p:p + len(kept)], p + np.stack([t, h, w], -1))
    np.testing.assert_array_equal(out.positions[p + k:], full.positions[-len(SUFFIX):])
    assert out.positions[-len(SUFFIX), 0] == p + max(GRID)  # the unpruned grid's end


def test_padding_slots_do_not_change_real_tokens(params):
    tokens = _tokens()
    result = baselines.evs(tokens, 0.5, valid=_holes())  # 19 of 24 slots real
    video, positions, valid = vlm.video_slots(tokens, result)
    n = int(result.num_kept)
    assert n < valid.shape[0]
    def run(v, pos, ok):
        at = vlm.sequence_positions(pos, prefix_len=3, suffix_len=4, grid=GRID)
        return vlm.forward(params, PREFIX, v, ok, SUFFIX, at, config=CFG)

    clean = run(video, positions, valid)
    garbage = run(jnp.where(valid[:, None], video, jnp.nan).at[-1, 0].set(1e30),
                  jnp.where(valid[:, None], positions, 999), valid)
    np.testing.assert_array_equal(garbage.logits, clean.logits)
    # Same as the compact sequence with the padding slots removed.
    compact = run(video[:n], positions[:n], valid[:n])
    np.testing.assert_allclose(clean.logits, compact.logits, rtol=1e-5, atol=1e-5)
    real = np.r_[np.arange(len(PREFIX) + n), len(PREFIX) + valid.shape[0] + np.arange(len(SUFFIX))]
    np.testing.assert_allclose(clean.hidden[real], compact.hidden, rtol=1e-5, atol=1e-5)


def test_no_recompile_across_videos_of_one_shape(params):
    chex.clear_trace_counter()

    def pipeline(tokens, valid):
        result = baselines.divprune(tokens, 0.5, valid=valid)
        return vlm.prefill(params, tokens, PREFIX, SUFFIX, config=CFG, result=result).logits

    run = jax.jit(chex.assert_max_traces(pipeline, n=1))
    a = run(_tokens(1), jnp.ones(GRID, bool))
    b = run(_tokens(2), _holes())  # another video and mask: no second trace
    assert a.shape == b.shape and not np.allclose(a, b)
    batch = jax.vmap(pipeline)(jnp.stack([_tokens(1), _tokens(2)]), jnp.stack([jnp.ones(GRID, bool), _holes()]))
    np.testing.assert_allclose(batch, np.stack([a, b]), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ FastV


def test_fastv_select_hand_case():
    scores = jnp.array([0.1, 0.5, 0.3, 0.9, 0.2])
    d = fastv_select(scores, jnp.array([1, 1, 1, 0, 1], bool), retain_ratio=0.4)
    assert d.indices.tolist() == [1, 2] and d.slot_valid.tolist() == [True, True]  # 0.9 is padding
    assert d.keep_mask.tolist() == [False, True, True, False, False] and int(d.num_kept) == 2
    d = fastv_select(scores, jnp.array([1, 0, 0, 0, 0], bool), retain_ratio=0.4)
    assert d.indices.tolist() == [0, 5] and d.slot_valid.tolist() == [True, False]  # K_v = budget(1) = 1
    d = fastv_select(jnp.ones(4), jnp.ones(4, bool), retain_ratio=0.5)
    assert d.indices.tolist() == [0, 1]  # ties: lower slot
    assert isinstance(d, tfs_jax.Decision)


def _last_row_reference(params, x, positions, valid):
    """Layer 0's last-token attention, head-averaged, in float64 numpy."""
    lp = jax.tree.map(lambda a: np.asarray(a[0], np.float64), params["layers"])
    att, hd, g = lp["self_attn"], CFG.head_dim, CFG.num_heads // CFG.num_kv_heads
    x = np.asarray(x, np.float64)
    h = x / np.sqrt(np.mean(x * x, -1, keepdims=True) + CFG.rms_eps) * lp["input_norm"]["scale"]
    q = (h @ att["q_proj"]["kernel"] + att["q_proj"]["bias"]).reshape(len(x), CFG.num_heads, hd)
    k = (h @ att["k_proj"]["kernel"] + att["k_proj"]["bias"]).reshape(len(x), CFG.num_kv_heads, hd)
    inv = CFG.rope_theta ** (-np.arange(0, hd, 2) / hd)
    ang = np.asarray(positions)[:, np.repeat(np.arange(3), CFG.mrope_section)] * inv
    ang = np.concatenate([ang, ang], -1)[:, None]
    rot = lambda a: a * np.cos(ang) + np.concatenate([-a[..., hd // 2:], a[..., :hd // 2]], -1) * np.sin(ang)
    q, k = rot(q), rot(k)
    rows = []
    for head in range(CFG.num_heads):
        s = k[:, head // g] @ q[-1, head] / np.sqrt(hd)
        s = np.where(np.asarray(valid), s, -np.inf)
        rows.append(np.exp(s - s.max()) / np.exp(s - s.max()).sum())
    return np.mean(rows, axis=0)


def test_fastv_keeps_the_top_r_by_last_token_attention(params):
    tokens = _tokens()
    fastv = vlm.FastVConfig(layer=1, retain_ratio=0.25)
    out = vlm.prefill(params, tokens, PREFIX, SUFFIX, config=CFG, fastv=fastv)
    p, k = len(PREFIX), np.prod(GRID)
    r = tfs_jax.static_budget(k, 0.25)
    assert out.video_slots.shape == (r,) and bool(np.all(out.video_slot_valid))
    # The scores are layer 0's head-averaged attention of the last token on the video.
    video, positions, valid = vlm.video_slots(tokens)
    x = jnp.concatenate([params["embed"][PREFIX],
                         vlm.Projector(CFG).apply({"params": params["projector"]}, video),
                         params["embed"][SUFFIX]])
    pos = vlm.sequence_positions(positions, prefix_len=p, suffix_len=len(SUFFIX), grid=GRID)
    row = _last_row_reference(params, x, pos, np.ones(len(x), bool))
    np.testing.assert_allclose(out.fastv_scores, row[p:p + k], rtol=1e-4, atol=1e-7)
    expected = np.sort(np.argsort(-row[p:p + k], kind="stable")[:r])
    assert out.video_slots.tolist() == expected.tolist()
    np.testing.assert_array_equal(out.positions[p:p + r], pos[p + expected])  # original positions


def test_fastv_that_prunes_nothing_changes_nothing(params):
    full = vlm.prefill(params, _tokens(), PREFIX, SUFFIX, config=CFG)
    keep_all = vlm.prefill(params, _tokens(), PREFIX, SUFFIX, config=CFG,
                           fastv=vlm.FastVConfig(layer=1, retain_ratio=1.0))
    np.testing.assert_allclose(keep_all.logits, full.logits, rtol=1e-5, atol=1e-5)
    after_last = vlm.prefill(params, _tokens(), PREFIX, SUFFIX, config=CFG,
                             fastv=vlm.FastVConfig(layer=CFG.num_layers, retain_ratio=0.25))
    np.testing.assert_allclose(after_last.logits, full.logits, rtol=1e-5, atol=1e-5)


def test_cascade_tfs_then_fastv(params):
    tokens = _tokens()
    result = tfs_jax.tfs_prune(tokens, tfs_jax.TFSConfig(retain_ratio=0.5))
    out = vlm.prefill(params, tokens, PREFIX, SUFFIX, config=CFG, result=result,
                      fastv=vlm.FastVConfig(layer=1, retain_ratio=0.5))
    k = result.indices.shape[0]
    assert out.video_slots.shape == (tfs_jax.static_budget(k, 0.5),)
    kept = int(np.sum(out.video_slot_valid))
    assert kept == tfs_jax.static_budget(int(result.num_kept), 0.5)
    slots = np.asarray(out.video_slots)[:kept]
    assert np.all(np.asarray(result.slot_valid)[slots])  # FastV picks among TFS's real tokens
    t, h, w = np.unravel_index(np.asarray(result.indices)[slots], GRID)
    p = len(PREFIX)
    np.testing.assert_array_equal(out.positions[p:p + kept], p + np.stack([t, h, w], -1))
    assert np.all(np.isfinite(out.logits))


# ------------------------------------------------------------------ errors


def test_bad_input_raises_before_tracing(params):
    with pytest.raises(ValueError, match="mrope_section"):
        vlm.VLMConfig.tiny(mrope_section=(2, 2, 2))
    with pytest.raises(ValueError, match="num_kv_heads"):
        vlm.VLMConfig.tiny(num_kv_heads=3)
    with pytest.raises(ValueError, match="layer"):
        vlm.FastVConfig(layer=0)
    with pytest.raises(ValueError, match="retain_ratio"):
        vlm.FastVConfig(retain_ratio=0.0)
    with pytest.raises(ValueError, match="exceeds num_layers"):
        vlm.prefill(params, _tokens(), PREFIX, SUFFIX, config=CFG, fastv=vlm.FastVConfig(layer=3))
    with pytest.raises(ValueError, match="video must have shape"):
        vlm.forward(params, PREFIX, jnp.ones((4, 3)), jnp.ones(4, bool), SUFFIX,
                    jnp.zeros((11, 3), jnp.int32), config=CFG)
    with pytest.raises(ValueError, match="positions must be integers of shape"):
        vlm.forward(params, PREFIX, jnp.ones((4, CFG.vision_dim)), jnp.ones(4, bool), SUFFIX,
                    jnp.zeros((10, 3), jnp.int32), config=CFG)
    with pytest.raises(ValueError, match="suffix_ids"):
        vlm.prefill(params, _tokens(), PREFIX, SUFFIX[:0], config=CFG)
    with pytest.raises(ValueError, match="logits"):
        vlm.prefill(params, _tokens(), PREFIX, SUFFIX, config=CFG, logits="all")


def test_prefill_checks_before_computing_positions(params):
    # Positions read config.temporal_stride and prefix_ids' length: the checks come first.
    with pytest.raises(ValueError, match="config must be a VLMConfig"):
        vlm.prefill(params, _tokens(), PREFIX, SUFFIX, config="x")
    with pytest.raises(ValueError, match="prefix_ids must be a 1-D integer array"):
        vlm.prefill(params, _tokens(), jnp.array(5), SUFFIX, config=CFG)
    with pytest.raises(ValueError, match="suffix_ids must be a 1-D integer array"):
        vlm.prefill(params, _tokens(), PREFIX, jnp.array(8), config=CFG)
    with pytest.raises(ValueError, match="video must have shape"):
        vlm.prefill(params, _tokens()[..., :3], PREFIX, SUFFIX, config=CFG)


# ------------------------------------------------------------------ the serving contract


def _prompt(video_token=90):
    """Token ids of [prefix, GRID's placeholders, suffix] (spatial merge 1)."""
    n = int(np.prod(GRID))
    return np.r_[np.asarray(PREFIX), np.full(n, video_token), np.asarray(SUFFIX)]


def test_serving_positions_are_the_adapters_positions():
    """qwen_vl_rope_index (the "qwen" convention) and this LM's own Qwen2-VL rule agree on
    a [prefix, video, suffix] prompt, unpruned and pruned."""
    from tfs_jax import serving

    ids = _prompt()
    thw = np.array([GRID])
    full, _ = serving.qwen_vl_rope_index(ids, thw, video_token_id=90, spatial_merge_size=1)
    own = vlm.sequence_positions(vlm.grid_positions(GRID), prefix_len=3, suffix_len=4, grid=GRID)
    np.testing.assert_array_equal(full.T, own)
    result = tfs_jax.tfs_prune(_tokens(), tfs_jax.TFSConfig(num_clusters=3, kmeans_iters=2))
    n = int(result.num_kept)
    pruned, _ = serving.qwen_vl_rope_index(ids, thw, video_token_id=90, spatial_merge_size=1,
                                           keep=np.asarray(result.keep_mask).reshape(-1))
    _, kept_positions, _ = tfs_jax.gather_kept(_tokens(), result)
    own = vlm.sequence_positions(kept_positions[:n], prefix_len=3, suffix_len=4, grid=GRID)
    np.testing.assert_array_equal(pruned.T, own)


def test_pruned_prefill_equals_the_kept_tokens_as_a_dense_sequence(params):
    """The slot layout with masked empty slots changes nothing: its text logits equal those
    of the kept tokens alone, fed densely at the same positions (float32 tolerance)."""
    from tfs_jax import serving

    ids = _prompt()
    thw = np.array([GRID])
    embeds = np.asarray(_tokens(4)).reshape(-1, CFG.vision_dim)
    pruned = serving.compact(serving.prune_video_embeds(
        embeds, thw, tfs_jax.TFSConfig(retain_ratio=0.5, num_clusters=3, kmeans_iters=2),
        spatial_merge_size=1), buckets=(32,))
    n = int(pruned.num_kept)
    assert 0 < n < 32 and pruned.embeds.shape[0] == 32
    positions, rope_delta = serving.qwen_vl_rope_index(ids, thw, video_token_id=90, spatial_merge_size=1,
                                                       keep=np.asarray(pruned.keep_mask))
    slots = vlm.positions_in_slots(positions, prefix_len=3, num_kept=n, slots=32)
    padded = vlm.forward(params, PREFIX, pruned.embeds, pruned.slot_valid, SUFFIX, slots, config=CFG)
    dense = vlm.forward(params, PREFIX, pruned.embeds[:n], jnp.ones(n, bool), SUFFIX, positions.T,
                           config=CFG)
    np.testing.assert_allclose(padded.logits, dense.logits, rtol=0, atol=1e-5)
    # The first generated token goes where it would go without pruning.
    full, full_delta = serving.qwen_vl_rope_index(ids, thw, video_token_id=90, spatial_merge_size=1)
    assert positions.shape[1] + rope_delta == full.shape[1] + full_delta == full.max() + 1


def test_positions_in_slots_hand_case():
    # Dense pruned prompt: 2 text, 2 kept video tokens, 1 text; 4 slots.
    prompt = np.array([[0, 1, 2, 3, 5], [0, 1, 2, 4, 5], [0, 1, 3, 2, 5]])
    got = vlm.positions_in_slots(prompt, prefix_len=2, num_kept=2, slots=4)
    assert got.tolist() == [[0, 0, 0], [1, 1, 1], [2, 2, 3], [3, 4, 2], [1, 1, 1], [1, 1, 1], [5, 5, 5]]
    with pytest.raises(ValueError, match="num_kept"):
        vlm.positions_in_slots(prompt, prefix_len=2, num_kept=5, slots=4)
