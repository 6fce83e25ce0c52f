"""Activation capture on tiny real models: counts and means against a naive one-probe-at-a-time reference."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from index_builder.indexing.capture import (
    LanguageCounts,
    LegQuality,
    ProbeMeans,
    encode_probes,
    length_batches,
    run_pass,
)
from index_builder.indexing.dictionaries import Entry
from index_builder.indexing.languages import prompt_name
from index_builder.indexing.models import ModelError, activation_modules, load_model
from index_builder.indexing.probes import build_probes

LANGS = ["en", "he", "ja", "sw"]
NAMES = {code: prompt_name(code) for code in LANGS}
# Short and very long words, so that one batch mixes probes of very different lengths (lots of padding).
ENTRIES = {
    ("en", "he"): [
        Entry("Monday", "שני"),
        Entry("a", "ב"),
        Entry("antidisestablishmentarianism" * 4, "אנטי" * 12),
    ],
    ("en", "ja"): [Entry("Tuesday", "火曜日"), Entry("kilometer", "キロメートル")],
    ("he", "sw"): [Entry("מים", "maji"), Entry("ספטמבר", "Septemba")],
    ("ja", "sw"): [Entry("東京", "Tokyo"), Entry("こんにちは" * 10, "habari" * 8)],
    ("en", "sw"): [Entry("x", "y")],
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _probes():
    return [p for pair, entries in ENTRIES.items() for p in build_probes(pair, entries, NAMES)]


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _naive_activations(loaded, input_ids: list[int]) -> list[np.ndarray]:
    """Per layer, act(gate(x)) of every token, (T, I), from one unpadded probe and our own hooks.

    The hooks sit on each layer's MLP input and recompute act_fn(gate_proj(x)), independently of the
    module that `capture` hooks.
    """
    acts: dict[int, np.ndarray] = {}

    def pre_hook(layer: int):
        def hook(mlp, args):
            acts[layer] = mlp.act_fn(mlp.gate_proj(args[0]))[0].double().cpu().numpy()

        return hook

    layers = loaded.model.get_decoder().layers
    handles = [layer.mlp.register_forward_pre_hook(pre_hook(i)) for i, layer in enumerate(layers)]
    try:
        with torch.inference_mode():
            loaded.model(input_ids=torch.tensor([input_ids]))
    finally:
        for h in handles:
            h.remove()
    return [acts[i] for i in range(len(layers))]


def _naive_counts(loaded, encoded) -> tuple[np.ndarray, np.ndarray]:
    n_layers, n_neurons = loaded.identity.n_layers, loaded.identity.n_neurons
    positive = np.zeros((len(LANGS), n_layers, n_neurons))
    tokens = np.zeros(len(LANGS))
    for e in encoded:
        acts = _naive_activations(loaded, e.input_ids)
        langs = np.array(e.token_langs)
        for k in range(len(LANGS)):
            rows = langs == k
            tokens[k] += rows.sum()
            for layer, a in enumerate(acts):
                positive[k, layer] += (a[rows] > 0).sum(axis=0)
    return positive, tokens


def _naive_means(loaded, encoded, neurons: list[np.ndarray]) -> np.ndarray:
    out = []
    for e in encoded:
        acts = _naive_activations(loaded, e.input_ids)
        content = np.array(e.content)
        out.append(
            np.concatenate([a[content][:, idx].mean(axis=0) for a, idx in zip(acts, neurons, strict=True)])
        )
    return np.array(out)  # (n_probes, n_columns)


def _counts(loaded, encoded, batch_size: int, max_batch_tokens: int | None = None):
    collector = LanguageCounts(len(LANGS), loaded.identity.n_layers, loaded.identity.n_neurons, "cpu")
    run_pass(loaded, encoded, collector, batch_size, max_batch_tokens)
    return collector.result()


def _means(loaded, encoded, neurons, batch_size: int) -> np.ndarray:
    collector = ProbeMeans(neurons, len(encoded), torch.device("cpu"))
    run_pass(loaded, encoded, collector, batch_size)
    return collector.result()


def _chosen_neurons(n_layers: int, n_neurons: int) -> list[np.ndarray]:
    """A few neurons per layer, one layer with none (it must simply get no columns)."""
    rng = np.random.default_rng(0)
    return [
        np.array([], dtype=np.int64) if layer == 2 else np.sort(rng.choice(n_neurons, 9, replace=False))
        for layer in range(n_layers)
    ]


@pytest.fixture(scope="module", params=["llama", "qwen2", "gemma"])
def loaded(request, tiny_model_factory):
    return load_model(str(tiny_model_factory(request.param)), device="cpu")


@pytest.fixture(scope="module")
def encoded(loaded):
    return encode_probes(loaded.tokenizer, _probes(), LANGS)


@pytest.fixture(scope="module")
def naive_counts(loaded, encoded):
    return _naive_counts(loaded, encoded)


def test_probes_differ_a_lot_in_length(encoded):
    lengths = [len(e.input_ids) for e in encoded]
    assert max(lengths) > 5 * min(lengths)


@pytest.mark.parametrize("batch_size", [1, 7])
def test_language_counts_equal_the_one_probe_at_a_time_reference(loaded, encoded, naive_counts, batch_size):
    positive, tokens = _counts(loaded, encoded, batch_size)
    ref_positive, ref_tokens = naive_counts
    assert (ref_tokens > 0).all()
    np.testing.assert_array_equal(tokens, ref_tokens)
    np.testing.assert_array_equal(positive, ref_positive)


def test_padding_never_counts_whatever_the_batching(loaded, encoded):
    one = _counts(loaded, encoded, batch_size=1)
    for batch_size, max_tokens in ((7, None), (64, 400), (len(encoded), None)):
        other = _counts(loaded, encoded, batch_size, max_tokens)
        np.testing.assert_array_equal(other[1], one[1])
        np.testing.assert_array_equal(other[0], one[0])


@pytest.mark.parametrize("batch_size", [1, 7])
def test_probe_means_equal_the_naive_mean_over_content_tokens(loaded, encoded, batch_size):
    neurons = _chosen_neurons(loaded.identity.n_layers, loaded.identity.n_neurons)
    means = _means(loaded, encoded, neurons, batch_size)
    reference = _naive_means(loaded, encoded, neurons)
    assert means.shape == (len(encoded), sum(len(n) for n in neurons))
    np.testing.assert_allclose(means, reference, atol=1e-5, rtol=0)


def test_probe_means_exclude_special_tokens(loaded, encoded):
    """BOS is in every probe but is no content token: including it would shift every mean."""
    assert encoded
    assert all(not e.content[0] for e in encoded)
    assert all(all(e.content[1:]) for e in encoded)


def test_hooks_are_removed_after_a_pass(loaded, encoded):
    before = _hook_count(loaded.model)
    _counts(loaded, encoded[:3], batch_size=2)
    assert _hook_count(loaded.model) == before == 0


def test_hooks_are_removed_when_a_pass_fails(loaded, encoded):
    class Failing(LanguageCounts):
        def add(self, layer, act):
            raise RuntimeError("collector broke")

    collector = Failing(len(LANGS), loaded.identity.n_layers, loaded.identity.n_neurons, "cpu")
    with pytest.raises(RuntimeError, match="collector broke"):
        run_pass(loaded, encoded[:3], collector, batch_size=2)
    assert _hook_count(loaded.model) == 0


def test_a_shared_activation_module_still_gives_per_layer_counts(tiny_model_factory):
    """When every layer shares one act_fn object, capture hooks gate_proj and applies act_fn itself."""
    fresh = load_model(str(tiny_model_factory("llama")), device="cpu")
    shared = fresh.model.get_decoder().layers[0].mlp.act_fn
    for layer in fresh.model.get_decoder().layers:
        layer.mlp.act_fn = shared
    modules, apply = activation_modules(fresh.model)
    assert apply
    assert modules == [layer.mlp.gate_proj for layer in fresh.model.get_decoder().layers]
    fresh = dataclasses.replace(fresh, activations=modules, apply_activation=apply)
    enc = encode_probes(fresh.tokenizer, _probes(), LANGS)
    positive, tokens = _counts(fresh, enc, batch_size=5)
    ref_positive, ref_tokens = _naive_counts(fresh, enc)
    np.testing.assert_array_equal(tokens, ref_tokens)
    np.testing.assert_array_equal(positive, ref_positive)
    # act(gate(x)) > 0 exactly when gate(x) > 0, so only the means show that act_fn is applied
    neurons = _chosen_neurons(fresh.identity.n_layers, fresh.identity.n_neurons)
    means = _means(fresh, enc, neurons, batch_size=5)
    np.testing.assert_allclose(means, _naive_means(fresh, enc, neurons), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("batch_size", "max_tokens"), [(1, None), (4, None), (64, 100), (3, 50), (8, 1)])
def test_length_batches_respect_both_limits_and_cover_every_index_once(batch_size, max_tokens):
    rng = random.Random(batch_size)
    lengths = [rng.randint(1, 60) for _ in range(97)]
    batches = length_batches(lengths, batch_size, max_tokens)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    for b in batches:
        assert 1 <= len(b) <= batch_size
        if max_tokens is not None and len(b) > 1:
            assert len(b) * max(lengths[i] for i in b) <= max_tokens


def test_length_batches_group_similar_lengths():
    lengths = [50, 2, 49, 3, 51, 1]
    assert length_batches(lengths, batch_size=3) == [[5, 1, 3], [2, 0, 4]]


def test_length_batches_of_nothing_is_nothing():
    assert length_batches([], batch_size=4) == []


@pytest.mark.parametrize(
    ("pair", "entry"),
    [(("en", "he"), Entry("Monday", "שני")), (("en", "ja"), Entry("Tuesday", "火曜日"))],
)
def test_encode_probes_maps_word_tokens_to_their_language(tiny_model_factory, pair, entry):
    tokenizer = load_model(str(tiny_model_factory("llama")), device="cpu").tokenizer
    probes = build_probes(pair, [entry], NAMES)
    assert len(probes) == 2 and all(probe.spans for probe in probes)  # both directions, each with its words
    for probe, e in zip(probes, encode_probes(tokenizer, probes, LANGS), strict=True):
        offsets = tokenizer(probe.text, return_offsets_mapping=True)["offset_mapping"]
        assert len(offsets) == len(e.input_ids) == len(e.token_langs) == len(e.content)
        for lang, start, end in probe.spans:
            k = LANGS.index(lang)
            covered = {
                i for (a, b), t in zip(offsets, e.token_langs, strict=True) if t == k for i in range(a, b)
            }
            # every character of the word, and at most the quotes around it besides
            assert set(range(start, end)) <= covered <= set(range(start - 1, end + 1))
        # the names, the quotes and the arrow belong to no language
        outside = [probe.text[a:b] for (a, b), t in zip(offsets, e.token_langs, strict=True) if t == -1]
        assert NAMES[pair[1]] in "".join(outside)
        assert "→" in "".join(outside)


def test_bfloat16_model_runs_a_pass(tiny_model_factory):
    path = str(tiny_model_factory("llama"))
    bf16 = load_model(path, device="cpu", dtype="bfloat16")
    assert bf16.identity.dtype == "bfloat16"
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    f32 = load_model(path, device="cpu", dtype="float32")
    enc = encode_probes(bf16.tokenizer, _probes(), LANGS)
    positive, tokens = _counts(bf16, enc, batch_size=4)
    ref_positive, ref_tokens = _counts(f32, enc, batch_size=4)
    np.testing.assert_array_equal(tokens, ref_tokens)
    p, ref_p = positive / tokens[:, None, None], ref_positive / ref_tokens[:, None, None]
    assert np.abs(p - ref_p).mean() < 0.02
    neurons = _chosen_neurons(bf16.identity.n_layers, bf16.identity.n_neurons)
    means = _means(bf16, enc, neurons, batch_size=4)
    assert means.dtype == np.float64
    np.testing.assert_allclose(means, _means(f32, enc, neurons, batch_size=4), atol=0.05)


@pytest.fixture(scope="module")
def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=64))


def test_a_model_without_gated_mlp_is_rejected_by_name(tiny_gpt2):
    with pytest.raises(ModelError, match="GPT2LMHeadModel"):
        activation_modules(tiny_gpt2)


def _naive_legs(loaded, encoded) -> dict[tuple[int, int], list[tuple[float, bool]]]:
    """Per direction, (mean gold-token log-prob, first gold token is top-1) of each probe, from the full
    logits of one unpadded probe at a time."""
    out: dict[tuple[int, int], list[tuple[float, bool]]] = {}
    for e in encoded:
        with torch.inference_mode():
            logits = loaded.model(input_ids=torch.tensor([e.input_ids])).logits[0].double()  # (T, V)
        logp = torch.log_softmax(logits, dim=-1)
        gold = [t for t, g in enumerate(e.gold) if g]
        assert gold and gold[0] > 0
        lps = [float(logp[t - 1, e.input_ids[t]]) for t in gold]
        top1 = int(logits[gold[0] - 1].argmax()) == e.input_ids[gold[0]]
        out.setdefault(e.direction, []).append((sum(lps) / len(lps), top1))
    return out


@pytest.mark.parametrize("batch_size", [1, 7])
def test_leg_quality_equals_the_full_logits_of_one_probe_at_a_time(loaded, encoded, batch_size):
    """The LM head applied at the gold positions only gives the same log-probabilities and top-1 as the
    model's whole output, whatever the batching and padding."""
    legs = LegQuality(len(LANGS), loaded.model.get_output_embeddings(), torch.device("cpu"))
    collector = LanguageCounts(len(LANGS), loaded.identity.n_layers, loaded.identity.n_neurons, "cpu")
    run_pass(loaded, encoded, collector, batch_size, legs=legs)
    n, logprob, top1 = legs.result()
    reference = _naive_legs(loaded, encoded)
    assert len(reference) == 2 * len(ENTRIES)  # both directions of every dictionary pair
    for (a, b), probes in reference.items():
        assert n[a, b] == len(probes)
        np.testing.assert_allclose(logprob[a, b], np.mean([lp for lp, _ in probes]), atol=1e-4, rtol=0)
        assert top1[a, b] == pytest.approx(np.mean([t for _, t in probes]))
    unprobed = n == 0
    assert unprobed.sum() == len(LANGS) ** 2 - len(reference)
    assert np.isnan(logprob[unprobed]).all()


def test_gold_tokens_are_the_second_word_only(loaded, encoded):
    probes = _probes()
    assert len(probes) == len(encoded)
    for probe, e in zip(probes, encoded, strict=True):
        assert any(e.gold)
        second = LANGS.index(probe.direction[1])
        assert all(lang == second for lang, g in zip(e.token_langs, e.gold, strict=True) if g)
        first_gold = e.gold.index(True)
        assert LANGS.index(probe.direction[0]) in e.token_langs[:first_gold]
