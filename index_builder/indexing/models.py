"""Loading Hugging Face causal LMs and finding the MLP activation of every layer.

A model is given as a local folder, a hub id (where the network allows) or a `.gguf` file; a GGUF is
converted once into a cached Hugging Face folder (bf16 safetensors) that both transformers and vLLM load.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CONVERSION_MARKER = "bridgex-conversion.json"
CONVERTER_VERSION = 2  # bump to re-convert cached folders (2: <bos> honoured)

# Gemma 3's own chat template (text only); GGUF files of the base model ship none, and vLLM's chat
# endpoint needs one.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


class ModelError(ValueError):
    """A model that cannot be loaded or is not a gated-MLP decoder."""


@dataclass(frozen=True)
class ModelIdentity:
    """What the index records about the model it was built on."""

    source: str  # the path or hub id the user gave
    folder: str | None  # the Hugging Face folder actually loaded (converted GGUFs land here)
    architecture: str
    config_hash: str
    dtype: str
    n_layers: int
    n_neurons: int  # MLP intermediate size (neurons per layer)


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: object
    identity: ModelIdentity
    activations: list[nn.Module]  # one module per layer whose forward output is act(gate(x))
    apply_activation: bool  # True when the hooked module is gate_proj and the hook must apply act_fn

    @property
    def input_device(self) -> torch.device:
        """Where inputs go (the embedding's device; with device_map="auto" layers may sit elsewhere)."""
        return self.model.get_input_embeddings().weight.device


def resolve_device(name: str) -> torch.device:
    """`auto` → CUDA when present, else CPU; otherwise any torch device string."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ModelError(f"unknown device {name!r} (expected auto, cpu, cuda or cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {name!r} requested but CUDA is not available on this machine")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` → float32 on CPU (faster than bf16 there), bfloat16 on CUDA."""
    if name == "auto":
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    if name not in DTYPES:
        raise ModelError(f"unknown dtype {name!r} (expected auto, {', '.join(DTYPES)})")
    return DTYPES[name]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("BRIDGEX_CACHE", ".cache/bridgex"))


def convert_gguf(gguf: Path, out_dir: Path, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Convert a `.gguf` file into a Hugging Face folder once; later calls reuse the folder.

    The folder is written beside its final name and renamed into place, so an interrupted conversion
    leaves nothing that looks finished.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(gguf)
    if not gguf.is_file():
        raise ModelError(f"GGUF file not found: {gguf}")
    digest = _sha256(gguf)
    marker = out_dir / CONVERSION_MARKER
    stamp = {"source": gguf.name, "sha256": digest, "converter": CONVERTER_VERSION}
    if marker.is_file() and json.loads(marker.read_text()) == stamp:
        return out_dir
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as err:  # transformers raises many types for unreadable files
        raise ModelError(f"cannot load GGUF {gguf}: {err}") from err
    # transformers' GGUF tokenizer ignores `tokenizer.ggml.add_bos_token`: without <bos> Gemma mostly repeats
    # a demonstration's answer, so honour the flag (it survives save_pretrained and reload).
    if _gguf_flag(gguf, "tokenizer.ggml.add_bos_token") and tokenizer.bos_token is not None:
        tokenizer.add_bos_token = True
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.to(dtype)
    if getattr(tokenizer, "chat_template", None) is None and model.config.model_type.startswith("gemma3"):
        tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / CONVERSION_MARKER).write_text(json.dumps(stamp))
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def _gguf_flag(gguf: Path, key: str) -> bool:
    """A boolean metadata field of a GGUF file (False when absent)."""
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields.get(key)
    return bool(field is not None and field.data and field.parts[field.data[0]][0])


def _decoder_layers(model: nn.Module) -> list[nn.Module]:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    if layers is None and hasattr(decoder, "language_model"):
        layers = getattr(decoder.language_model, "layers", None)
    return list(layers) if layers is not None else []


def activation_modules(model: nn.Module) -> tuple[list[nn.Module], bool]:
    """Per layer, the module whose output is act(gate(x)); raises ModelError for non-gated MLPs.

    Returns (modules, apply_activation). Normally the modules are the layers' `mlp.act_fn`. When a model
    shares one activation object between layers (a hook would then fire for every layer at once) or the
    activation is a plain function, the `gate_proj` modules are returned and the hook applies `act_fn`.
    """
    layers = _decoder_layers(model)
    name = type(model).__name__
    expected = "expected layers with mlp.gate_proj, up_proj, down_proj (Llama, Mistral, Qwen2, Gemma)"
    if not layers:
        raise ModelError(f"model {name} is not a gated-MLP decoder (no model.layers[*].mlp): {expected}")
    mlps = [getattr(layer, "mlp", None) for layer in layers]
    for mlp in mlps:
        if mlp is None or not all(hasattr(mlp, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")):
            raise ModelError(f"model {name} is not a gated-MLP decoder: {expected}")
    acts = [mlp.act_fn for mlp in mlps]
    if all(isinstance(a, nn.Module) for a in acts) and len({id(a) for a in acts}) == len(acts):
        return acts, False
    return [mlp.gate_proj for mlp in mlps], True


def config_hash(config) -> str:
    """sha256 of the model config as sorted JSON (without transformers' version field)."""
    data = config.to_dict()
    data.pop("transformers_version", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def load_model(
    spec: str,
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: Path | None = None,
    device_map: str | None = None,
) -> LoadedModel:
    """Load `spec` (folder, hub id or .gguf) for activation capture on `device` in `dtype`.

    `device_map="auto"` spreads a model too large for one GPU over all visible devices (accelerate);
    `device` then only decides the dtype default.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    path = Path(spec)
    folder: Path | None = None
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file not found: {spec}")
        folder = convert_gguf(path, (cache_dir or default_cache_dir()) / "models" / path.stem)
    elif path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{spec} is not a Hugging Face model folder (no config.json)")
        folder = path
    elif spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelError(f"model not found: {spec} (expected a model folder, a .gguf file or a hub id)")
    source = str(folder) if folder else spec
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, device_map=device_map)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load model {spec!r}: {str(err).splitlines()[0]}") from err
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"model {spec!r} has no fast tokenizer: word spans need offset mappings")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    acts, apply = activation_modules(model)
    if device_map is None:
        model.to(dev)
    model.eval()
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    identity = ModelIdentity(
        source=spec,
        folder=str(folder) if folder else None,
        architecture=type(model).__name__,
        config_hash=config_hash(model.config),
        dtype=str(torch_dtype).removeprefix("torch."),
        n_layers=len(acts),
        n_neurons=int(cfg.intermediate_size),
    )
    return LoadedModel(model, tokenizer, identity, acts, apply)
