"""Activation capture: forward hooks on every layer's MLP activation, batched probes, padding masked.

Hooks are installed once for a whole pass (not per probe) and hand each layer's activation
`act(gate(x))` of shape (batch, tokens, neurons) to a collector that reduces it on the model's device
in float32, so nothing of size (layers × neurons × probes) is ever held:

- `LanguageCounts` (pass 1): per language, how many of its word-span tokens have activation > 0.
- `ProbeMeans` (pass 2 of a two-pass build): per probe, the mean activation over its content tokens (padding
  and special tokens excluded) of a chosen set of neurons — only the neurons the HSIC step reads.
- `AllProbeMeans` (the one-pass build): the same means for every neuron, handed per batch to a store (a
  memory-mapped file, see `means_store`), so the neurons can be chosen after the pass.
- `Collectors`: several collectors fed by one forward pass (the one-pass build: counts and all means).

`LegQuality` rides on pass 1's forward pass: the model's own teacher-forced log-probability of each probe's
gold translation (its second word), with the LM head applied only at the positions that predict a gold token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .models import LoadedModel
from .probes import Probe, complete_generation, token_languages


@dataclass(frozen=True)
class EncodedProbe:
    input_ids: list[int]
    token_langs: list[int]  # per token: index into the language list, or -1
    content: list[bool]  # per token: False for special tokens (BOS/EOS), which every probe shares
    gold: list[bool]  # per token: part of the probe's second word (the translation the model is shown)
    direction: tuple[int, int]  # (first language, second language) as indices into the language list


@dataclass
class Batch:
    rows: torch.Tensor  # (B,) indices of the probes in the encoded list
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    token_langs: torch.Tensor  # (B, T) language index, -1 for other tokens and padding
    content: torch.Tensor  # (B, T) bool, real non-special tokens
    gold: torch.Tensor  # (B, T) bool, tokens of the second word
    direction: torch.Tensor  # (B, 2) language indices (first, second)


def encode_probes(tokenizer, probes: Sequence[Probe], languages: Sequence[str]) -> list[EncodedProbe]:
    """Tokenize probes and map every token to the language whose word span it overlaps; mark the tokens of
    the second word (`gold`: empty for a generate-mode probe whose continuation was empty)."""
    if not probes:
        return []
    enc = tokenizer(
        [p.text for p in probes],
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        add_special_tokens=True,
    )
    index = {code: i for i, code in enumerate(languages)}
    out = []
    for probe, ids, offsets, special in zip(
        probes, enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"], strict=True
    ):
        langs = token_languages(offsets, probe.spans, languages)
        second = token_languages(offsets, probe.spans[1:], languages) if len(probe.spans) > 1 else []
        gold = [lang >= 0 for lang in second] or [False] * len(ids)
        direction = (index[probe.direction[0]], index[probe.direction[1]])
        out.append(EncodedProbe(list(ids), langs, [not s for s in special], gold, direction))
    return out


def length_batches(
    lengths: Sequence[int], batch_size: int, max_batch_tokens: int | None = None
) -> list[list[int]]:
    """Group indices of similar length (sorted, stable) into batches of at most `batch_size` rows and, if
    given, at most `max_batch_tokens` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[i]  # sorted ascending: the newcomer is the longest
        too_many = len(current) >= batch_size
        too_big = max_batch_tokens is not None and (len(current) + 1) * longest > max_batch_tokens
        if current and (too_many or too_big):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def collate(encoded: Sequence[EncodedProbe], rows: Sequence[int], pad_id: int, device: torch.device) -> Batch:
    """Right-pad one batch of encoded probes into tensors on `device`."""
    width = max(len(encoded[r].input_ids) for r in rows)
    n = len(rows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    langs = torch.full((n, width), -1, dtype=torch.long)
    content = torch.zeros((n, width), dtype=torch.bool)
    gold = torch.zeros((n, width), dtype=torch.bool)
    for b, r in enumerate(rows):
        e = encoded[r]
        k = len(e.input_ids)
        ids[b, :k] = torch.tensor(e.input_ids)
        mask[b, :k] = 1
        langs[b, :k] = torch.tensor(e.token_langs)
        content[b, :k] = torch.tensor(e.content)
        gold[b, :k] = torch.tensor(e.gold)
    direction = torch.tensor([encoded[r].direction for r in rows], dtype=torch.long)  # (B, 2)
    return Batch(
        torch.tensor(list(rows), device=device),
        ids.to(device),
        mask.to(device),
        langs.to(device),
        content.to(device),
        gold.to(device),
        direction.to(device),
    )


class LanguageCounts:
    """Pass 1 collector: positive-activation counts per (language, layer, neuron) over word-span tokens.

    Counts accumulate in float32 on the model's device; they are exact integers up to 2**24 tokens per
    language, far beyond any probe set (checked in `result`).
    """

    def __init__(self, n_languages: int, n_layers: int, n_neurons: int, device: torch.device):
        self.device = device
        self.positive = torch.zeros((n_languages, n_layers, n_neurons), dtype=torch.float32, device=device)
        self.tokens = torch.zeros(n_languages, dtype=torch.float64, device=device)
        # summed activations: the tie-break among neurons of equal probability (many fire on every token)
        self.activation = torch.zeros((n_languages, n_layers, n_neurons), dtype=torch.float32, device=device)
        self._present: torch.Tensor | None = None
        self._onehot: torch.Tensor | None = None

    def begin(self, batch: Batch) -> None:
        langs = batch.token_langs.reshape(-1)  # (B*T,)
        self._span = torch.nonzero(langs >= 0).squeeze(1)  # (n,) flat positions of word-span tokens
        span_langs = langs.index_select(0, self._span)
        present = torch.unique(span_langs)  # (k,) languages in this batch
        self._present = present
        self._onehot = (present.unsqueeze(1) == span_langs).to(torch.float32)  # (k, n)
        self.tokens.index_add_(0, present, self._onehot.sum(dim=1).double())

    def add(self, layer: int, act: torch.Tensor) -> None:
        if self._present is None or self._present.numel() == 0:
            return
        n_neurons = act.shape[-1]
        span = act.reshape(-1, n_neurons).index_select(0, self._span).to(torch.float32)  # (n, I)
        both = self._onehot @ torch.cat([(span > 0).to(torch.float32), span], dim=1)  # (k, 2I)
        self.positive[self._present, layer] += both[:, :n_neurons]
        self.activation[self._present, layer] += both[:, n_neurons:]

    def end(self) -> None:
        """Nothing to do after a batch: the counts are already summed."""

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(positive counts (n_lang, L, I), token counts (n_lang,)) as float64 host arrays."""
        tokens = self.tokens.cpu().numpy()
        if tokens.max(initial=0) >= 2**24:
            raise OverflowError("more than 2**24 word-span tokens for one language: float32 counts inexact")
        return self.positive.double().cpu().numpy(), tokens

    def mean_activation(self) -> np.ndarray:
        """(n_lang, L, I) mean activation over each language's word-span tokens (float64 host array)."""
        tokens = self.tokens.clamp_min(1.0)[:, None, None]
        return (self.activation.double() / tokens).cpu().numpy()


class ProbeMeans:
    """Pass 2 collector: per probe, mean activation over content tokens of selected neurons.

    `neurons[l]` lists the neuron indices of layer l to keep; the output has one column per kept neuron,
    layers in order (columns of layer l start at `offsets[l]`).
    """

    def __init__(self, neurons: Sequence[np.ndarray], n_probes: int, device: torch.device):
        self.device = device
        self.index = [torch.as_tensor(np.asarray(n, dtype=np.int64), device=device) for n in neurons]
        sizes = [len(n) for n in neurons]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.out = torch.zeros((n_probes, int(self.offsets[-1])), dtype=torch.float32, device=device)
        self._weights: torch.Tensor | None = None
        self._rows: torch.Tensor | None = None

    def begin(self, batch: Batch) -> None:
        content = batch.content.to(torch.float32)  # (B, T)
        self._weights = content / content.sum(dim=1, keepdim=True).clamp_min(1.0)
        self._rows = batch.rows

    def add(self, layer: int, act: torch.Tensor) -> None:
        idx = self.index[layer]
        if idx.numel() == 0:
            return
        selected = act.index_select(-1, idx).to(torch.float32)  # (B, T, k_l)
        means = torch.einsum("bt,btk->bk", self._weights, selected)  # (B, k_l)
        self.out[self._rows, self.offsets[layer] : self.offsets[layer + 1]] = means

    def end(self) -> None:
        """Nothing to do after a batch: the means are already in place."""

    def result(self) -> np.ndarray:
        """(n_probes, n_columns) float64 host array."""
        return self.out.double().cpu().numpy()


class AllProbeMeans:
    """One-pass collector: per probe, the mean activation over content tokens of every neuron of every layer
    (what `ProbeMeans` keeps for the chosen neurons), written per batch through `write(rows, means)` with
    `means` a float32 (B, L, I) host array — the store decides where the rows live."""

    def __init__(self, n_layers: int, n_neurons: int, device: torch.device, write: Callable):
        self.device = device
        self.shape = (n_layers, n_neurons)
        self.write = write
        self._weights: torch.Tensor | None = None
        self._batch: torch.Tensor | None = None
        self._rows: np.ndarray | None = None

    def begin(self, batch: Batch) -> None:
        content = batch.content.to(torch.float32)  # (B, T)
        self._weights = content / content.sum(dim=1, keepdim=True).clamp_min(1.0)
        self._batch = torch.zeros((content.shape[0], *self.shape), dtype=torch.float32, device=self.device)
        self._rows = batch.rows.cpu().numpy()

    def add(self, layer: int, act: torch.Tensor) -> None:
        self._batch[:, layer] = torch.einsum("bt,bti->bi", self._weights, act.to(torch.float32))

    def end(self) -> None:
        self.write(self._rows, self._batch.cpu().numpy())


class Collectors:
    """Several collectors on one forward pass (each gets every batch and every layer's activation)."""

    def __init__(self, *collectors):
        self.collectors = collectors
        self.device = collectors[0].device
        if any(c.device != self.device for c in collectors):
            raise ValueError("collectors of one pass must reduce on the same device")

    def begin(self, batch: Batch) -> None:
        for c in self.collectors:
            c.begin(batch)

    def add(self, layer: int, act: torch.Tensor) -> None:
        for c in self.collectors:
            c.add(layer, act)

    def end(self) -> None:
        for c in self.collectors:
            c.end()


Collector = LanguageCounts | ProbeMeans | AllProbeMeans | Collectors


class LegQuality:
    """Per directed language pair (a → b): how well the model itself translates a into b, read off the
    probes' forward pass. For each probe `{a}:"w_a"→{b}:"w_b"` the LM head runs at the positions that
    predict the gold word's tokens only (never over every position), giving
    - the length-normalised log-probability of the gold word: mean over its tokens of log P(token | prefix);
    - whether its first token is the model's top-1 prediction.
    Sums accumulate in float64 on the model's device: `sums[a, b] = (probes, Σ mean log-prob, Σ top-1)`,
    so shards of a distributed build add up exactly.
    """

    def __init__(self, n_languages: int, head: nn.Module, device: torch.device, softcap: float | None = None):
        self.device = device
        self.head = head
        self.softcap = softcap
        self.sums = torch.zeros((n_languages, n_languages, 3), dtype=torch.float64, device=device)

    def add(self, batch: Batch, hidden: torch.Tensor) -> None:
        """`hidden`: (B, T, H) final-normed hidden states of the batch (the decoder's output)."""
        predicts = batch.gold[:, 1:]  # (B, T-1): position t predicts token t+1
        rows, pos = torch.nonzero(predicts, as_tuple=True)  # (n,), (n,)
        if rows.numel() == 0:
            return
        weight = self.head.weight
        states = hidden[rows, pos].to(device=weight.device, dtype=weight.dtype)  # (n, H)
        logits = self.head(states).to(torch.float32)  # (n, V)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        ids = batch.input_ids[rows, pos + 1].to(logits.device)  # (n,) the gold tokens
        # log P(gold) = logit(gold) - logsumexp(logits): no (n, V) log-softmax is materialised
        token_lp = logits.gather(1, ids[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)  # (n,)
        top1 = (logits.argmax(dim=-1) == ids).to(torch.float64)  # (n,)
        rows = rows.to(logits.device)
        n_rows = batch.gold.shape[0]
        count = torch.zeros(n_rows, dtype=torch.float64, device=logits.device).index_add_(
            0, rows, torch.ones_like(token_lp, dtype=torch.float64)
        )
        lp_sum = torch.zeros(n_rows, dtype=torch.float64, device=logits.device).index_add_(
            0, rows, token_lp.to(torch.float64)
        )
        # nonzero() is row-major, so a row's first hit is its first gold token
        first = torch.ones_like(rows, dtype=torch.bool)
        first[1:] = rows[1:] != rows[:-1]
        first_top1 = torch.zeros(n_rows, dtype=torch.float64, device=logits.device)
        first_top1[rows[first]] = top1[first]
        scored = count > 0  # (B,)
        direction = batch.direction.to(logits.device)[scored]  # (k, 2)
        values = torch.stack(
            [torch.ones_like(count[scored]), lp_sum[scored] / count[scored], first_top1[scored]], dim=1
        )  # (k, 3)
        flat = direction[:, 0] * self.sums.shape[1] + direction[:, 1]
        self.sums.view(-1, 3).index_add_(0, flat.to(self.device), values.to(self.device))

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probes, mean log-prob, top-1 rate), each (n_lang, n_lang) indexed [a, b] for a → b; NaN where
        no probe of that direction was scored."""
        sums = self.sums.cpu().numpy()
        n = sums[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            return n, sums[..., 1] / n, sums[..., 2] / n


class ActivationHooks:
    """Forward hooks on every layer's MLP activation for the lifetime of a `with` block.

    The hooks pass each activation (B, T, I) to `self.collector`; with no collector they do nothing.
    """

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.collector: Collector | None = None
        self._handles: list = []

    def _hook(self, layer: int) -> Callable:
        act_fn = (
            self.loaded.model.get_decoder().layers[layer].mlp.act_fn if self.loaded.apply_activation else None
        )

        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            if self.collector is not None:
                act = act_fn(output) if act_fn is not None else output
                if act.device != self.collector.device:  # layers spread over devices (device_map="auto")
                    act = act.to(self.collector.device)
                self.collector.add(layer, act)

        return hook

    def __enter__(self) -> ActivationHooks:
        self._handles = [
            m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.loaded.activations)
        ]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def run_pass(
    loaded: LoadedModel,
    encoded: Sequence[EncodedProbe],
    collector: Collector,
    batch_size: int,
    max_batch_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
    legs: LegQuality | None = None,
    skip: int = 0,
    after_batch: Callable[[int], None] | None = None,
    groups: Sequence[tuple[int, int]] | None = None,
) -> None:
    """Stream all encoded probes through the backbone with `collector` receiving activations; the LM head
    runs only where `legs` asks for it (the gold words' positions), never over every position.

    Batches follow `pass_batches` (deterministic; within each of `groups` if given), so a resumed pass skips
    the first `skip` of them; `after_batch(k)` is called once k batches are done (a checkpoint's cue)."""
    device = loaded.input_device
    decoder = loaded.model.get_decoder()
    pad_id = loaded.tokenizer.pad_token_id
    plan = pass_batches(encoded, batch_size, max_batch_tokens, groups)
    if progress is not None and skip:
        progress(sum(len(rows) for rows in plan[:skip]))
    with ActivationHooks(loaded) as hooks, torch.inference_mode():
        hooks.collector = collector
        for done, rows in enumerate(plan[skip:], start=skip + 1):
            batch = collate(encoded, rows, pad_id, device)
            collector.begin(batch)
            out = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
            if legs is not None:
                legs.add(batch, out[0])
            collector.end()
            if progress is not None:
                progress(len(rows))
            if after_batch is not None:
                after_batch(done)


def pass_batches(
    encoded: Sequence[EncodedProbe],
    batch_size: int,
    max_batch_tokens: int | None,
    groups: Sequence[tuple[int, int]] | None = None,
) -> list[list[int]]:
    """The batches `run_pass` makes of `encoded`: `length_batches` of all of it, or of each `(start, stop)`
    group on its own (a one-pass build batches each pair alone, so its numbers do not depend on which other
    pairs a process holds)."""
    lengths = [len(e.input_ids) for e in encoded]
    if groups is None:
        return length_batches(lengths, batch_size, max_batch_tokens)
    return [
        [start + i for i in rows]
        for start, stop in groups
        for rows in length_batches(lengths[start:stop], batch_size, max_batch_tokens)
    ]


def generate_probes(
    loaded: LoadedModel,
    probes: Sequence[Probe],
    batch_size: int,
    max_new_tokens: int = 30,
    progress: Callable[[int], None] | None = None,
) -> list[Probe]:
    """`generate` mode: greedy continuations (at most `max_new_tokens`, cut at newline or closing quote)
    appended to each prompt, so the capture pass sees the model's own second word."""
    tok = loaded.tokenizer
    device = loaded.input_device
    previous_side = tok.padding_side
    tok.padding_side = "left"
    out: list[Probe] = []
    try:
        for start in range(0, len(probes), batch_size):
            chunk = probes[start : start + batch_size]
            enc = tok([p.text for p in chunk], return_tensors="pt", padding=True).to(device)
            with torch.inference_mode():
                gen = loaded.model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
                )
            texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            out.extend(complete_generation(p, t) for p, t in zip(chunk, texts, strict=True))
            if progress is not None:
                progress(len(chunk))
    finally:
        tok.padding_side = previous_side
    return out


def columns_for(masks: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Per layer, the sorted neuron indices set in any of the (L, I) masks."""
    union = np.logical_or.reduce(list(masks))  # (L, I)
    return [np.flatnonzero(row) for row in union]
