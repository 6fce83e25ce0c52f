"""`bridgex-index build` and `convert`: parse and validate, then hand over to `indexing.pipeline` and
`build.models`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .common import _band, _codes, fails_cleanly


@click.command()
@click.option(
    "--model", required=True, help="Model folder, .gguf file (converted once and cached) or hub id."
)
@click.option("--langs", required=True, help="Comma-separated ISO 639-1 codes, e.g. en,de,sw,he.")
@click.option(
    "--dictionaries", "dict_source", type=click.Choice(["cldr"]), help="Built-in CLDR dictionaries."
)
@click.option(
    "--dict-dir",
    type=click.Path(path_type=Path),
    help="Directory of MUSE files <src>-<trg>.txt (instead of --dictionaries cldr).",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Index file to write (.duckdb).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--dtype",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
    help="Model dtype; auto is float32 on CPU, bfloat16 on CUDA.",
)
@click.option("--batch-size", default=32, show_default=True, type=int, help="Probes per forward pass.")
@click.option(
    "--max-batch-tokens", default=8192, show_default=True, type=int, help="Padded tokens per forward pass."
)
@click.option(
    "--top-rate",
    type=float,
    help="Share of neurons per language: specific 0.05 of each layer; top-rate and lape 0.01 of the whole "
    "model (the defaults).",
)
@click.option(
    "--selector",
    default="specific",
    show_default=True,
    type=click.Choice(["specific", "top-rate", "lape"]),
    help="How language neurons are chosen: specific (p_a minus the other languages' mean, per layer), "
    "top-rate (the authors' selector, for reproduction) or lape (Tang et al. 2024).",
)
@click.option(
    "--min-specificity",
    default=0.05,
    show_default=True,
    type=float,
    help="specific: least p_a minus the other languages' mean p for a language neuron.",
)
@click.option(
    "--min-set",
    default=5,
    show_default=True,
    type=int,
    help="A band layer votes for a bridge only when its overlap and bridge-specific sets have this many "
    "neurons; a pair with no voting layer gets no ranking.",
)
@click.option(
    "--probe-half",
    type=click.IntRange(0, 1),
    help="Probe only the even (0) or odd (1) entries of each pair: two indexes from disjoint halves.",
)
@click.option("--strict", is_flag=True, help="Fail (exit 2, nothing written) when the index is degenerate.")
@click.option(
    "--middle-band",
    default="0.3,0.7",
    show_default=True,
    callback=_band,
    help="Depth fractions of the layers that score bridges.",
)
@click.option(
    "--bridges", "bridge_list", help="Comma-separated candidate bridges (default: every other language)."
)
@click.option(
    "--mode",
    default="teacher-forced",
    show_default=True,
    type=click.Choice(["teacher-forced", "generate"]),
    help="Probe mode: one forward pass per probe, or the model's greedy continuation (paper-faithful).",
)
@click.option(
    "--max-pairs", default=100, show_default=True, type=int, help="Probe entries per language pair."
)
@click.option(
    "--test-fraction", default=0.2, show_default=True, type=float, help="Held-out share per dictionary."
)
@click.option(
    "--temperature", default=1.0, show_default=True, type=float, help="Selection softmax temperature."
)
@click.option(
    "--low-resource", help="Comma-separated languages to mark low-resource (default: all but major ones)."
)
@click.option(
    "--passes",
    default=1,
    show_default=True,
    type=click.IntRange(1, 2),
    help="1: one forward pass, every neuron's per-probe means stored (see --means-dir); 2: a second pass "
    "over the probes for the chosen neurons only (no stored means, twice the model time).",
)
@click.option(
    "--means-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="One pass: where the per-probe means are stored while the build runs (default: OUT.means beside "
    "the index); an interrupted build run again resumes from them.",
)
@click.option(
    "--means-dtype",
    default="float32",
    show_default=True,
    type=click.Choice(["float32", "float16"]),
    help="One pass: stored means' precision (float16 halves the disk; its HSIC is not bit-equal).",
)
@click.option("--keep-means", is_flag=True, help="One pass: keep the stored means once the index is written.")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Where converted models are cached.")
@click.option(
    "--device-map",
    type=click.Choice(["auto"]),
    help="auto: spread a model larger than one GPU over all visible GPUs (accelerate).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@fails_cleanly
def build(model, langs, dict_source, dict_dir, out, quiet, bridge_list, low_resource, **opts) -> None:
    """Build a bridge index from a model and bilingual dictionaries."""
    from ..indexing.config import BuildConfig, BuildError
    from ..indexing.pipeline import build_index

    if (dict_source is None) == (dict_dir is None):
        raise BuildError("give exactly one of --dictionaries cldr or --dict-dir DIR")
    if not out.parent.is_dir():
        raise BuildError(f"output directory does not exist: {out.parent}")
    if out.is_dir():
        raise BuildError(
            f"--out {out} is a directory; give the index file's path, e.g. {out / 'index.duckdb'}"
        )
    if not os.access(out.parent, os.W_OK):
        raise BuildError(f"cannot write to {out.parent}")
    if quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    cfg = BuildConfig(
        model=model,
        langs=_codes(langs) or [],
        out=out,
        dictionaries="cldr" if dict_source else str(dict_dir),
        bridges=_codes(bridge_list),
        low_resource=_codes(low_resource),
        **opts,
    )
    if cfg.passes == 1:
        _check_means_folder(cfg.means_folder)
    summary = build_index(cfg, progress=not quiet)
    if "written" not in summary:  # other ranks of a torchrun build: rank 0 reports
        return
    click.echo(
        f"wrote {out}: {summary['probes']} probes, {summary['pairs']} pairs, seconds {summary['seconds']};"
        f" health {summary['health']['verdict']} (bridgex-index health {out})"
    )


def _check_means_folder(folder: Path) -> None:
    """The one pass stores its means in `folder` (created if missing): refuse, before the model loads, a
    folder that is a file, or lies under a file or a directory this process cannot write."""
    from ..indexing.config import BuildError

    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise BuildError(f"cannot store the pass's means in {folder}: {existing} is not a directory")
    if not os.access(existing, os.W_OK):
        raise BuildError(f"cannot store the pass's means in {folder}: {existing} is not writable")


@click.command()
@click.argument("gguf", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Hugging Face folder to write.")
@click.option(
    "--dtype", default="bfloat16", show_default=True, type=click.Choice(["float32", "bfloat16", "float16"])
)
@fails_cleanly
def convert(gguf: Path, out: Path, dtype: str) -> None:
    """Convert a .gguf model once into a Hugging Face folder (which vLLM can serve)."""
    from ..indexing.models import DTYPES, convert_gguf

    click.echo(str(convert_gguf(gguf, out, DTYPES[dtype])))
