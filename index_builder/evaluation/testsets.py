"""Test sets a user brings to an evaluation: MUSE word dictionaries and parallel sentence sets.

Three layouts are read, each with validation that names file and line (`TestSetError`):

    MUSE        DIR/<src>-<trg>.txt       `source_word target_word` per line (several lines per word allowed)
    parallel    DIR/<lang>.txt            one sentence per line, line i of every file is the same sentence;
                                          an empty line means the language lacks that sentence
    FLORES-200  DIR/<split>/<code>.<split>  e.g. devtest/swh_Latn.devtest (ISO 639-1 codes are mapped)

Every set carries a name and a SHA-256 over the names and bytes of the files it read, so a result can
say exactly which test set it was measured on (`provenance()`). The shipped sets (Django's translation
catalogs, see `scripts/make_sentence_set.py`) are `shipped_sentences()` and `shipped_words()`; the latter is
also what the directory name `shipped` means to `read_muse_test_dir` (`--test-dict-dir shipped`).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..indexing.dictionaries import DictionaryError, PairDictionary, read_muse

Pair = tuple[str, str]

_CODE = r"[a-z]{2,3}"
_MUSE_NAME = re.compile(rf"({_CODE})-({_CODE})\.txt")
_PARALLEL_NAME = re.compile(rf"({_CODE})\.txt")
SHIPPED_PACKAGE = "index_builder.data"
SHIPPED_DIR = "sentences"
SHIPPED_WORDS_DIR = "words"
SHIPPED_WORDS = "shipped"  # the --test-dict-dir value that names the shipped word set (not a path)

# ISO 639-1 (or CLDR's three-letter code) → FLORES-200 file code: the project's languages and other common
# ones. Arabic is Modern Standard Arabic, Chinese is Simplified, Persian is Western Persian as in FLORES.
FLORES_CODES: dict[str, str] = {
    "ar": "arb_Arab",
    "bn": "ben_Beng",
    "ca": "cat_Latn",
    "cs": "ces_Latn",
    "da": "dan_Latn",
    "de": "deu_Latn",
    "el": "ell_Grek",
    "en": "eng_Latn",
    "es": "spa_Latn",
    "et": "est_Latn",
    "fa": "pes_Arab",
    "fi": "fin_Latn",
    "fil": "tgl_Latn",
    "fr": "fra_Latn",
    "ha": "hau_Latn",
    "he": "heb_Hebr",
    "hi": "hin_Deva",
    "hu": "hun_Latn",
    "id": "ind_Latn",
    "ig": "ibo_Latn",
    "it": "ita_Latn",
    "ja": "jpn_Jpan",
    "ko": "kor_Hang",
    "ms": "zsm_Latn",
    "nl": "nld_Latn",
    "pl": "pol_Latn",
    "pt": "por_Latn",
    "ro": "ron_Latn",
    "ru": "rus_Cyrl",
    "sv": "swe_Latn",
    "sw": "swh_Latn",
    "ta": "tam_Taml",
    "th": "tha_Thai",
    "tl": "tgl_Latn",
    "tr": "tur_Latn",
    "uk": "ukr_Cyrl",
    "ur": "urd_Arab",
    "vi": "vie_Latn",
    "yo": "yor_Latn",
    "zh": "zho_Hans",
    "zu": "zul_Latn",
}
FLORES_SPLITS = ("dev", "devtest")


class TestSetError(ValueError):
    """A test set that cannot be read or does not fit the index; the message names the file (and line)."""

    __test__ = False  # not a pytest test class despite its name


def _sha256(files: Iterable[tuple[str, bytes]]) -> str:
    """A stable hash of (name, content) pairs: the same files give the same hash on any machine."""
    digest = hashlib.sha256()
    for name, data in sorted(files):
        digest.update(name.encode("utf-8") + b"\0" + len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


def _key(language: str, word: str) -> str:
    """A language-qualified word as the dictionaries' split writes it (`sw:mbwa`), NFC and case-folded."""
    return f"{language}:{unicodedata.normalize('NFC', word).casefold()}"


def _check_languages(pairs: Iterable[Pair], allowed: Collection[str], where: Mapping[Pair, str]) -> None:
    """Every language of every pair is one of `allowed`, and no pair translates a language into itself."""
    for pair in pairs:
        source, target = pair
        if source == target:
            raise TestSetError(f"{where[pair]}: source and target are both {source!r}")
        for code in pair:
            if code not in allowed:
                raise TestSetError(
                    f"{where[pair]}: language {code!r} is not in the index "
                    f"(index languages: {', '.join(sorted(allowed))})"
                )


def _parse_pairs(pairs: Iterable[str | Pair]) -> list[Pair]:
    """Pairs given as `sw-he` strings or (source, target) tuples."""
    result: list[Pair] = []
    for pair in pairs:
        if isinstance(pair, str):
            parts = pair.strip().split("-")
            if len(parts) != 2 or not all(re.fullmatch(_CODE, p) for p in parts):
                raise TestSetError(f"pair {pair!r}: expected SOURCE-TARGET such as sw-he")
            result.append((parts[0], parts[1]))
        else:
            result.append((pair[0], pair[1]))
    return result


# ------------------------------------------------------------------------------------------ MUSE words


@dataclass
class WordTestSet:
    """MUSE test dictionaries, one per (source, target) pair, oriented as their file names say."""

    name: str
    path: Path
    sha256: str
    dictionaries: dict[Pair, PairDictionary]
    kind: str = "muse"  # "muse" | "shipped"

    @property
    def pairs(self) -> list[Pair]:
        return list(self.dictionaries)

    def words(self) -> set[str]:
        """Every test word, language-qualified and case-folded (`sw:mbwa`), sources and golds alike."""
        return {
            key
            for (source, target), d in self.dictionaries.items()
            for e in d.entries
            for key in (_key(source, e.source_word), _key(target, e.target_word))
        }

    def overlap(self, probe_words: Iterable[str]) -> set[str]:
        """The test words that are also probe or demonstration words.

        `probe_words` are language-qualified (`sw:mbwa`, as `dictionaries.held_out_words` writes them);
        comparison is NFC and case-folded. The caller refuses the set or calls `without` on the result.
        """
        probes = {_key(*word.split(":", 1)) for word in probe_words if ":" in word}
        return self.words() & probes

    def without(self, words: Collection[str]) -> WordTestSet:
        """The same set minus every entry with a word in `words` (keys as `overlap` returns them).

        The hash stays the one of the files read; the name says that entries were dropped.
        """
        kept: dict[Pair, PairDictionary] = {}
        for (source, target), d in self.dictionaries.items():
            entries = [
                e
                for e in d.entries
                if _key(source, e.source_word) not in words and _key(target, e.target_word) not in words
            ]
            if entries:
                kept[(source, target)] = PairDictionary(source, target, entries, d.origin)
        name = self.name if not words else f"{self.name} (minus {len(words)} probe words)"
        return WordTestSet(name, self.path, self.sha256, kept, self.kind)

    def provenance(self) -> dict[str, object]:
        """What a run records about its test set."""
        return {
            "kind": self.kind,
            "name": self.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "pairs": [f"{s}-{t}" for s, t in self.pairs],
            "entries": {f"{s}-{t}": len(d.entries) for (s, t), d in self.dictionaries.items()},
        }


def read_muse_test_dir(
    directory: str | Path,
    languages: Collection[str],
    pairs: Iterable[str | Pair] | None = None,
    name: str | None = None,
) -> WordTestSet:
    """Read MUSE test dictionaries `DIR/<src>-<trg>.txt` for the index's `languages`.

    The pairs come from the file names, or from `pairs` (`sw-he` or tuples; each needs its own file).
    Other files are ignored (MUSE's own `en-de.5000-6500.txt` must be renamed to `en-de.txt`). A language
    outside `languages`, a missing file and a malformed line are TestSetErrors naming file and line.
    The string `shipped` (not a path such as `./shipped`) is the shipped word set: `shipped_words`.
    """
    if isinstance(directory, str) and directory == SHIPPED_WORDS:
        return shipped_words(languages, pairs)
    directory = Path(directory)
    if not directory.is_dir():
        raise TestSetError(f"{directory}: no such test dictionary directory")
    allowed = set(languages)
    if pairs is None:
        found = {}
        for path in sorted(directory.iterdir()):
            match = _MUSE_NAME.fullmatch(path.name)
            if match and path.is_file():
                found[(match[1], match[2])] = path
        if not found:
            raise TestSetError(
                f"{directory}: no MUSE test dictionary (expected files <src>-<trg>.txt such as en-sw.txt)"
            )
    else:
        found = {pair: directory / f"{pair[0]}-{pair[1]}.txt" for pair in _parse_pairs(pairs)}
        if not found:
            raise TestSetError(f"{directory}: no pairs asked for")
    _check_languages(found, allowed, {pair: str(path) for pair, path in found.items()})
    for pair, path in found.items():
        if not path.is_file():
            raise TestSetError(f"{path}: no such file (pair {pair[0]}-{pair[1]} asked for)")
    dictionaries: dict[Pair, PairDictionary] = {}
    for (source, target), path in found.items():
        try:
            dictionaries[(source, target)] = read_muse(path, source, target)
        except DictionaryError as exc:
            raise TestSetError(str(exc)) from exc
    sha = _sha256((path.name, path.read_bytes()) for path in found.values())
    return WordTestSet(name or directory.name, directory, sha, dictionaries)


# ------------------------------------------------------------------------------------ parallel sentences


@dataclass(frozen=True)
class SentencePair:
    """One test sentence of a pair; `line` is its 1-based line number in the set's files."""

    line: int
    source: str
    target: str


@dataclass
class ParallelSet:
    """Line-aligned sentences per language; an empty string where a language lacks the sentence."""

    name: str
    kind: str  # "parallel" | "flores" | "shipped"
    path: Path
    sha256: str
    lines: dict[str, list[str]] = field(repr=False)

    @property
    def languages(self) -> list[str]:
        return sorted(self.lines)

    def pair(self, source: str, target: str) -> list[SentencePair]:
        """The sentences of `source` → `target`: the lines both languages have (both non-empty)."""
        for code in (source, target):
            if code not in self.lines:
                raise TestSetError(
                    f"{self.path}: test set {self.name!r} has no {code!r} sentences "
                    f"(it has {', '.join(self.languages)})"
                )
        if source == target:
            raise TestSetError(f"{self.path}: source and target are both {source!r}")
        return [
            SentencePair(i, s, t)
            for i, (s, t) in enumerate(zip(self.lines[source], self.lines[target], strict=True), start=1)
            if s and t
        ]

    def pair_counts(self, languages: Sequence[str] | None = None) -> dict[Pair, int]:
        """Sentences per ordered pair of `languages` (default: all of the set's)."""
        codes = list(languages) if languages is not None else self.languages
        return {(s, t): len(self.pair(s, t)) for s in codes for t in codes if s != t}

    def provenance(self) -> dict[str, object]:
        """What a run records about its test set."""
        return {
            "kind": self.kind,
            "name": self.name,
            "path": str(self.path),
            "sha256": self.sha256,
            "languages": self.languages,
            "lines": len(next(iter(self.lines.values()), [])),
        }


def _read_lines(path: Path) -> list[str]:
    """The stripped lines of a UTF-8 text file (BOM and CR dropped); bad bytes and control characters
    are TestSetErrors naming the line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TestSetError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TestSetError(f"{path}:{line}: not UTF-8 ({exc.reason})") from exc
    lines = text.removeprefix("\ufeff").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    result: list[str] = []
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        bad = next((c for c in line if unicodedata.category(c) == "Cc" and c != "\t"), None)
        if bad is not None:
            raise TestSetError(f"{path}:{number}: control character U+{ord(bad):04X} in a sentence line")
        result.append(line.strip())
    return result


def _aligned(files: Mapping[str, Path], name: str, kind: str, path: Path) -> ParallelSet:
    """A ParallelSet from one file per language, all with the same number of lines."""
    lines = {code: _read_lines(file) for code, file in files.items()}
    counts = {code: len(rows) for code, rows in lines.items()}
    if len(set(counts.values())) > 1:
        most = max(set(counts.values()), key=list(counts.values()).count)
        odd = next(code for code, n in counts.items() if n != most)
        raise TestSetError(
            f"{files[odd]}: {counts[odd]} lines where the other files have {most} "
            "(a parallel set needs one line per sentence in every file; leave a line empty where a "
            "language lacks it)"
        )
    sha = _sha256((file.name, file.read_bytes()) for file in files.values())
    return ParallelSet(name, kind, path, sha, lines)


def _wanted(languages: Iterable[str] | None) -> list[str] | None:
    return None if languages is None else sorted(set(languages))


def read_parallel_dir(
    directory: str | Path, languages: Iterable[str] | None = None, name: str | None = None
) -> ParallelSet:
    """Read a line-aligned parallel set `DIR/<lang>.txt` (all its languages, or those in `languages`,
    each of which must have its file)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TestSetError(f"{directory}: no such test set directory")
    present = {
        match[1]: path
        for path in sorted(directory.iterdir())
        if (match := _PARALLEL_NAME.fullmatch(path.name)) and path.is_file()
    }
    wanted = _wanted(languages)
    if wanted is None:
        files = present
    else:
        missing = [code for code in wanted if code not in present]
        if missing:
            raise TestSetError(
                f"{directory / (missing[0] + '.txt')}: no such file (the test set has "
                f"{', '.join(sorted(present)) or 'no <lang>.txt file'})"
            )
        files = {code: present[code] for code in wanted}
    if len(files) < 2:
        raise TestSetError(
            f"{directory}: a parallel set needs at least two files <lang>.txt, found "
            f"{', '.join(path.name for path in files.values()) or 'none'}"
        )
    return _aligned(files, name or directory.name, "parallel", directory)


def flores_code(code: str) -> str:
    """The FLORES-200 file code of an ISO 639-1 code (`sw` → `swh_Latn`)."""
    try:
        return FLORES_CODES[code]
    except KeyError:
        raise TestSetError(
            f"no FLORES-200 code known for language {code!r} (known: {', '.join(sorted(FLORES_CODES))})"
        ) from None


def read_flores(
    directory: str | Path, languages: Iterable[str], split: str = "devtest", name: str | None = None
) -> ParallelSet:
    """Read FLORES-200's `<split>/<code>.<split>` files for `languages` (ISO 639-1 codes).

    `directory` is the FLORES root (holding `dev/` and `devtest/`) or the split folder itself.
    """
    if split not in FLORES_SPLITS:
        raise TestSetError(f"unknown FLORES-200 split {split!r} (expected one of {', '.join(FLORES_SPLITS)})")
    root = Path(directory)
    folder = root / split if (root / split).is_dir() else root
    if not folder.is_dir():
        raise TestSetError(f"{root}: no such FLORES-200 directory")
    wanted = _wanted(languages) or []
    files: dict[str, Path] = {}
    for code in wanted:
        path = folder / f"{flores_code(code)}.{split}"
        if not path.is_file():
            raise TestSetError(f"{path}: no such file (FLORES-200 layout {split}/<code>.{split})")
        files[code] = path
    if len(files) < 2:
        raise TestSetError(f"{folder}: a parallel set needs at least two languages, got {', '.join(wanted)}")
    return _aligned(files, name or f"{root.name}/{split}", "flores", folder)


def shipped_sentences(languages: Iterable[str] | None = None) -> ParallelSet:
    """The parallel set installed with the package (Django catalog sentences; see its NOTICE)."""
    folder = resources.files(SHIPPED_PACKAGE).joinpath(SHIPPED_DIR)
    with resources.as_file(folder) as path:
        result = read_parallel_dir(path, languages, name="bridgex-django-sentences")
    result.kind = "shipped"
    return result


def shipped_words(
    languages: Collection[str] | None = None, pairs: Iterable[str | Pair] | None = None
) -> WordTestSet:
    """The MUSE word set installed with the package (Django's one-word catalog messages; see its NOTICE):
    the given `pairs` (each must be shipped, its languages in `languages`), else every shipped pair whose
    two languages are in `languages` (default: all shipped pairs)."""
    folder = resources.files(SHIPPED_PACKAGE).joinpath(SHIPPED_WORDS_DIR)
    with resources.as_file(folder) as path:
        shipped = [
            (match[1], match[2])
            for file in sorted(path.iterdir())
            if (match := _MUSE_NAME.fullmatch(file.name)) and file.is_file()
        ]
        codes = sorted({code for pair in shipped for code in pair})
        allowed = set(codes if languages is None else languages)
        if pairs is None:
            chosen = [pair for pair in shipped if set(pair) <= allowed]
            if not chosen:
                raise TestSetError(
                    f"the shipped word set has no pair of the languages {', '.join(sorted(allowed))} "
                    f"(it has {', '.join(codes)})"
                )
        else:
            chosen = _parse_pairs(pairs)
            if languages is not None:
                _check_languages(chosen, allowed, {pair: f"pair {pair[0]}-{pair[1]}" for pair in chosen})
            missing = next((pair for pair in chosen if pair not in shipped), None)
            if missing is not None:
                raise TestSetError(
                    f"the shipped word set has no pair {missing[0]}-{missing[1]} "
                    f"({len(shipped)} ordered pairs of {', '.join(codes)})"
                )
        result = read_muse_test_dir(path, allowed, chosen, name="bridgex-django-words")
    result.kind = "shipped"
    return result
