"""Tiny random decoder models with a locally trained tokenizer, for tests that need a real model.

Everything is built here, offline: a byte-level BPE tokenizer trained on CLDR names (so every script the
tests use has tokens) and a randomly initialised Llama, Qwen2 or Gemma 3 model with head_dim 32 (the
smallest head size vLLM's CPU attention backend accepts). The saved folder loads with transformers and
with vLLM.
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
CORPUS_LOCALES = ("en", "de", "fr", "es", "it", "pt", "id", "ar", "he", "ja", "zh", "sw", "fi", "hu")


def _corpus() -> list[str]:
    """Lines of CLDR names in several scripts, plus the probe template's punctuation."""
    from babel import Locale

    lines: list[str] = []
    for code in CORPUS_LOCALES:
        loc = Locale.parse(code)
        names = list(loc.territories.values()) + list(loc.languages.values())[:200]
        names += list(loc.months["format"]["wide"].values()) + list(loc.days["format"]["wide"].values())
        own = loc.get_display_name(code)
        lines += [f'{own}:"{n}"→English:"{n}"' for n in names]
    return lines


def train_tokenizer(out_dir: Path, vocab_size: int = 2048):
    """Train a byte-level BPE tokenizer and return it as a `PreTrainedTokenizerFast` saved in `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def _config(family: str, vocab_size: int, tok):
    import transformers

    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    if family == "llama":
        return transformers.LlamaConfig(**common)
    if family == "qwen2":
        return transformers.Qwen2Config(**common)
    if family == "gemma":
        return transformers.Gemma3TextConfig(**common, sliding_window=64, query_pre_attn_scalar=32)
    raise ValueError(f"unknown tiny model family {family!r} (expected llama, qwen2 or gemma)")


def make_tiny_model(path: Path, family: str = "llama", seed: int = 0) -> Path:
    """Save a random tiny `family` model with its tokenizer into `path` and return `path`."""
    import torch
    import transformers

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(path)
    config = _config(family, len(tok), tok)
    torch.manual_seed(seed)
    if family == "gemma":
        model = transformers.Gemma3ForCausalLM(config)
    else:
        model = transformers.AutoModelForCausalLM.from_config(config)
    model.to(torch.float32).save_pretrained(path)
    return path


def constant_piece(tok) -> tuple[int, str]:
    """The token a constant model writes: the first vocabulary entry that decodes to 3+ ASCII letters."""
    for token_id in range(len(tok)):
        text = tok.decode([token_id])
        if len(text) >= 3 and text.isascii() and text.isalpha():
            return token_id, text
    raise ValueError("the tokenizer has no token of three or more ASCII letters")


def make_constant_model(path: Path, seed: int = 0) -> tuple[Path, str]:
    """Save a tiny Llama whose greedy output is one visible token repeated, whatever the prompt.

    By construction, not by luck of the random weights: every embedding row is the same vector `c`, the
    attention and MLP output projections are zero (so the final hidden state is `c` at every position),
    and the untied lm_head has zero rows except the chosen token's, which is `c`: that token's logit is
    |c|²/rms(c) > 0 and every other logit is exactly 0, on any CPU and in any precision.
    Returns the folder and the piece of text the model repeats.
    """
    import torch
    import transformers

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(path)
    config = _config("llama", len(tok), tok)
    config.tie_word_embeddings = False
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config)
    token_id, piece = constant_piece(tok)
    with torch.no_grad():
        c = torch.ones(config.hidden_size)
        model.model.embed_tokens.weight.copy_(c.expand_as(model.model.embed_tokens.weight))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        model.lm_head.weight[token_id] = c
    model.to(torch.float32).save_pretrained(path)
    return path, piece
