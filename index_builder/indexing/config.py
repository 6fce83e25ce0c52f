"""The build's configuration: every parameter (`BuildConfig`, all recorded in the index's provenance) and
`validate`, which checks the inputs before the model is loaded, so bad input fails in a second, not after a
minute of loading, and returns the validated `Plan` (languages, names, dictionaries split into probe and
test entries)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import bridges, means_store
from .dictionaries import (
    DictionaryError,
    PairDictionary,
    cldr_dictionaries,
    held_out_words,
    load_muse_dir,
    split_entries,
)
from .languages import UnknownLanguageError, low_resource_set, prompt_name, validate_codes
from .probes import MODES, Probe, build_probes

SELECTORS = ("specific", "top-rate", "lape")
# specific: 5% of each layer's neurons (measured on Gemma 3 270M: 1% leaves the median bridge-specific set in
# the band at 17 neurons and 78% of pairs without a layer that can vote; docs/results/index-validity.md);
# top-rate and lape: 1% of all L×I neurons, as the authors.
DEFAULT_TOP_RATE = {"specific": 0.05, "top-rate": 0.01, "lape": 0.01}
Pair = tuple[str, str]


class BuildError(ValueError):
    """Input that cannot produce an index (the message is meant for the user)."""


@dataclass
class BuildConfig:
    """Every parameter of a build; defaults follow method.md (and the paper where it is explicit)."""

    model: str
    langs: list[str]
    out: Path
    dictionaries: str = "cldr"  # "cldr", or a directory of MUSE files `<src>-<trg>.txt`
    device: str = "auto"
    dtype: str = "auto"  # float32 on CPU (faster there than bf16), bfloat16 on CUDA
    batch_size: int = 32
    max_batch_tokens: int = 8192  # padded tokens per forward pass, bounds activation memory
    top_rate: float | None = None  # None: DEFAULT_TOP_RATE of the selector
    selector: str = "specific"  # top-rate: the authors' selector, kept for reproduction
    min_specificity: float = 0.05  # specific only: p_a minus the other languages' mean p, at least
    min_set: int = 5  # a band layer votes only when its overlap and bridge-specific sets both have this many
    filter_rate: float = 0.95  # LAPE only
    activation_bar_ratio: float = 0.95  # LAPE only
    middle_band: tuple[float, float] = (0.3, 0.7)  # the authors used layers 10–21 of 32
    bridges: list[str] | None = None  # candidate bridges; None = every other index language
    mode: str = "teacher-forced"
    max_pairs: int = 100  # probe entries per language pair (each gives two probes)
    test_fraction: float = 0.2  # held-out share of each dictionary, never probed
    temperature: float = 1.0  # selection-probability softmax temperature
    max_new_tokens: int = 30  # generate mode only
    low_resource: list[str] | None = None  # None = every language not in languages.DEFAULT_HIGH_RESOURCE
    cache_dir: Path | None = None
    device_map: str | None = None  # "auto": spread a model larger than one GPU over the visible devices
    hsic_max_bytes: int = 256 * 2**20
    strict: bool = False  # refuse to write an index whose health verdict is "degenerate"
    probe_half: int | None = None  # 0 or 1: only the even or odd probe entries of each pair
    passes: int = 1  # 1: every neuron's per-probe means stored, one forward pass; 2: pass 2 re-runs the model
    means_dir: Path | None = None  # one pass: where the per-probe means live (None: `<out>.means` beside out)
    means_dtype: str = "float32"  # one pass: float32, or float16 (half the disk; HSIC no longer bit-equal)
    keep_means: bool = False  # one pass: keep the stored means after the index is written

    def __post_init__(self) -> None:
        if self.top_rate is None:
            self.top_rate = DEFAULT_TOP_RATE.get(self.selector, 0.01)

    def parameters(self) -> dict:
        """JSON-ready parameters for the provenance table."""
        data = asdict(self)
        data["out"] = str(self.out)
        data["cache_dir"] = str(self.cache_dir) if self.cache_dir else None
        data["means_dir"] = str(self.means_dir) if self.means_dir else None
        return data

    @property
    def means_folder(self) -> Path:
        """Where a one-pass build stores its per-probe means: `means_dir`, else `<out>.means` beside out."""
        return self.means_dir or means_store.default_dir(self.out)

    def band(self, n_layers: int) -> list[int]:
        """The middle band's layer indices for a model of `n_layers` (a BuildError when it is empty)."""
        try:
            return bridges.middle_band(n_layers, self.middle_band)
        except ValueError as err:
            raise BuildError(str(err)) from err


@dataclass
class Plan:
    """Validated inputs: the languages, their names and the dictionaries split into probe and test."""

    langs: list[str]
    names: dict[str, str]
    low_resource: set[str]
    candidates: list[str]
    dictionaries: dict[Pair, PairDictionary]
    probe_entries: dict[Pair, list] = field(default_factory=dict)
    test_entries: dict[Pair, list] = field(default_factory=dict)

    def probes(self, mode: str) -> dict[Pair, list[Probe]]:
        """The probes of every pair with probe entries, in `mode` (generate-mode probes get their answers
        from the model later)."""
        return {
            pair: build_probes(pair, entries, self.names, mode)
            for pair, entries in self.probe_entries.items()
        }


def validate(cfg: BuildConfig) -> Plan:
    """Check every input that does not need the model; raise BuildError (or a ValueError subclass with a
    user-facing message: unknown language, dictionary errors)."""
    try:
        langs = validate_codes(cfg.langs)
        _check_parameters(cfg, langs)
        return _split_dictionaries(cfg, langs, _candidates(cfg, langs))
    except (BuildError, DictionaryError, UnknownLanguageError):
        raise
    except ValueError as err:  # the pure helpers' checks (empty lists, bands, fractions) are input errors
        raise BuildError(str(err)) from err


def _check_parameters(cfg: BuildConfig, langs: list[str]) -> None:
    if len(langs) < 3:
        raise BuildError(
            f"need at least 3 languages (a source, a target and a bridge), got {','.join(langs)}"
        )
    if cfg.selector not in SELECTORS:
        raise BuildError(f"unknown selector {cfg.selector!r} (expected {' or '.join(SELECTORS)})")
    if cfg.mode not in MODES:
        raise BuildError(f"unknown mode {cfg.mode!r} (expected {' or '.join(MODES)})")
    if not 0 < cfg.top_rate < 1:
        raise BuildError(f"--top-rate must be between 0 and 1, got {cfg.top_rate}")
    if not 0 < cfg.min_specificity <= 1:
        raise BuildError(f"--min-specificity must be in (0, 1], got {cfg.min_specificity}")
    if cfg.min_set < 1:
        raise BuildError(f"--min-set must be at least 1, got {cfg.min_set}")
    if cfg.probe_half not in (None, 0, 1):
        raise BuildError(f"--probe-half must be 0 or 1, got {cfg.probe_half}")
    if cfg.passes not in (1, 2):
        raise BuildError(f"--passes must be 1 or 2, got {cfg.passes}")
    if cfg.means_dtype not in means_store.DTYPES:
        raise BuildError(f"--means-dtype must be {' or '.join(means_store.DTYPES)}, got {cfg.means_dtype}")
    if cfg.batch_size < 1 or cfg.max_pairs < 1:
        raise BuildError("--batch-size and --max-pairs must be at least 1")
    if not 0 <= cfg.test_fraction < 1:
        raise BuildError(f"--test-fraction must be in [0, 1), got {cfg.test_fraction}")
    if cfg.temperature <= 0:
        raise BuildError(f"--temperature must be positive, got {cfg.temperature}")
    bridges.middle_band(100, cfg.middle_band)  # checks the bounds; the layer count is checked after loading


def _candidates(cfg: BuildConfig, langs: list[str]) -> list[str]:
    """The bridge candidates (checked to be index languages); also checks the low-resource list."""
    candidates = langs
    if cfg.bridges is not None:
        candidates = validate_codes(cfg.bridges)
        outside = [c for c in candidates if c not in langs]
        if outside:
            raise BuildError(
                f"bridge candidate(s) {','.join(outside)} not among --langs: "
                "a bridge needs its own language neurons"
            )
    if cfg.low_resource:  # an empty list means: no language is low-resource
        explicit = validate_codes(cfg.low_resource)
        outside = [c for c in explicit if c not in langs]
        if outside:
            raise BuildError(f"--low-resource language(s) {','.join(outside)} not among --langs")
    return candidates


def _split_dictionaries(cfg: BuildConfig, langs: list[str], candidates: list[str]) -> Plan:
    if cfg.dictionaries == "cldr":
        dicts = cldr_dictionaries(langs)
    else:
        dicts = load_muse_dir(Path(cfg.dictionaries), langs)
    plan = Plan(
        langs=langs,
        names={c: prompt_name(c) for c in langs},
        low_resource=low_resource_set(langs, cfg.low_resource),
        candidates=candidates,
        dictionaries=dicts,
    )
    held_out = set().union(*(held_out_words(d, cfg.test_fraction) for d in dicts.values()))
    for pair, d in sorted(dicts.items()):
        probe, test = split_entries(d, cfg.test_fraction, cfg.max_pairs, held_out)
        if cfg.probe_half is not None:
            probe = probe[cfg.probe_half :: 2]
        if probe:
            plan.probe_entries[pair] = probe
        plan.test_entries[pair] = test
    probed = {c for pair in plan.probe_entries for c in pair}
    unprobed = [c for c in langs if c not in probed]
    if unprobed:
        raise BuildError(f"no dictionary entries to probe for language(s) {','.join(unprobed)}")
    return plan
