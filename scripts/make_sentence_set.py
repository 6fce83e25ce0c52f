"""Build the shipped parallel sentence set and word test set from Django's translation catalogs.

Django (BSD-3-Clause) ships `.po` catalogs for about 100 languages in its wheel. Every catalog translates
the same English messages (the msgids), so aligning them by msgid gives a line-aligned parallel set, and
its one-word messages give a word test set in MUSE format (one catalog reader serves both):

    .venv/bin/python scripts/make_sentence_set.py                 # pip download django==PIN, then build
    .venv/bin/python scripts/make_sentence_set.py --wheel django-5.2.9-py3-none-any.whl

Every message read: non-fuzzy, translated, singular; inner whitespace (line breaks included) becomes one
space; the first translation of a message in Django's catalog order (sorted paths) wins.

Sentences: English of at least four words, with no placeholder (`%(name)s`, `%s`, `{0}`), HTML tag or
entity in the English or the translation, and a translation that differs from the English. Writes
`index_builder/data/sentences/<lang>.txt` (line i is the same message in every file; empty where a language
lacks it), Django's LICENSE and a NOTICE, and prints the sentences per language and per pair.

Words: English of one word of letters only (two at least: Django's one-letter weekday initials are not
words; a msgctxt is allowed and keeps messages apart), a translation that is one token (no whitespace, no
placeholder or markup, not punctuation alone), and per pair two words that are not copies
(`bridgex_index.words.copy_key`). Messages are aligned by (msgctxt, msgid). Writes
`index_builder/data/words/<src>-<trg>.txt` (`source_word target_word` per line, sorted) for every ordered
pair of the languages, or, when that would exceed MAX_WORD_BYTES, for the pairs with a side in
WORD_FOCUS; Django's LICENSE and a NOTICE; prints the entries per pair.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from babel.messages.pofile import read_po

from bridgex_index.words import copy_key, normalise_word

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "index_builder" / "data" / "sentences"
DEFAULT_WORDS_OUT = REPO / "index_builder" / "data" / "words"
DJANGO_VERSION = "5.2.9"
LANGUAGES = ("en", "fr", "es", "de", "it", "pt", "id", "ar", "he", "ja", "zh", "sw", "fi", "hu")
# Our code → Django's catalog folder. CLDR's `pt` (what the index's dictionaries use) is Brazilian
# Portuguese, so `pt` takes Django's pt_BR; `zh` takes Simplified Chinese.
CATALOGS = {"pt": "pt_BR", "zh": "zh_Hans"}
MIN_WORDS = 4
# The word set's size limit, and the pairs kept above it (those with a low-resource or a less served side)
MAX_WORD_BYTES = 1_500_000
WORD_FOCUS = ("sw", "ar", "he", "fi", "hu", "id")
_ENGLISH_WORD = re.compile(r"[A-Za-z]{2,}")
Message = tuple[str | None, str]  # (msgctxt, msgid)
Pair = tuple[str, str]  # (source, target) language codes
# printf conversions (%(name)s, %s, %d, %%), str.format fields ({0}, {name}), HTML tags and entities
_MARKUP = re.compile(r"%(\([^)]*\))?[-#0 +]*\d*(\.\d+)?[a-zA-Z%]|\{[^}]*\}|<[^>]*>|&#?\w+;")


class SentenceSetError(RuntimeError):
    """The wheel could not be fetched or does not hold the catalogs asked for."""


def is_sentence(text: str) -> bool:
    """Non-empty, with no placeholder, HTML tag or entity."""
    return bool(text.strip()) and not _MARKUP.search(text)


def fetch_wheel(version: str, into: Path) -> Path:
    """`pip download --no-deps django==VERSION` into `into`; the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-q", "-d", str(into), f"django=={version}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob(f"[Dd]jango-{version}-*.whl"))
    if done.returncode != 0 or not wheels:
        raise SentenceSetError(f"pip could not download django=={version}: {done.stderr.strip()[-300:]}")
    return wheels[0]


def catalog_entries(wheel: zipfile.ZipFile, folder: str) -> Iterator[tuple[str | None, str, str]]:
    """(msgctxt, English, translation) of every non-fuzzy, translated, singular message of one language
    over all of Django's catalogs (sorted by path), inner whitespace collapsed to one space."""
    names = sorted(n for n in wheel.namelist() if n.endswith(".po") and f"/locale/{folder}/" in n)
    if not names:
        raise SentenceSetError(f"the wheel has no catalog for locale {folder!r}")
    for name in names:
        with contextlib.redirect_stdout(io.StringIO()):  # babel prints plural-form warnings
            catalog = read_po(io.BytesIO(wheel.read(name)))
        for message in catalog:
            english, translation = message.id, message.string
            if not english or message.fuzzy or not isinstance(english, str):
                continue
            if not isinstance(translation, str) or not translation.strip():
                continue
            yield message.context, " ".join(english.split()), " ".join(translation.split())


def catalog_messages(wheel: zipfile.ZipFile, folder: str) -> dict[str, str]:
    """msgid → translation for every kept sentence of one language (the first translation of a msgid
    wins)."""
    messages: dict[str, str] = {}
    for _context, english, translation in catalog_entries(wheel, folder):
        if len(english.split()) < MIN_WORDS or not is_sentence(english) or not is_sentence(translation):
            continue
        if translation == english:
            continue
        messages.setdefault(english, translation)
    return messages


def is_word_message(english: str, translation: str) -> bool:
    """One English word of letters only (two at least), translated to one token: no whitespace, no
    placeholder or markup, not punctuation alone."""
    return (
        bool(_ENGLISH_WORD.fullmatch(english))
        and len(translation.split()) == 1
        and is_sentence(translation)
        and bool(normalise_word(translation))
    )


def catalog_words(wheel: zipfile.ZipFile, folder: str) -> dict[Message, str]:
    """(msgctxt, msgid) → translation for every kept one-word message of one language (the first
    translation of a message wins)."""
    words: dict[Message, str] = {}
    for context, english, translation in catalog_entries(wheel, folder):
        if is_word_message(english, translation):
            words.setdefault((context, english), translation)
    return words


def word_pairs(per_language: dict[str, dict[Message, str]]) -> dict[Pair, list[str]]:
    """The sorted MUSE lines of every ordered pair: the messages both languages have, minus copies."""
    out: dict[Pair, list[str]] = {}
    for a, b in itertools.permutations(per_language, 2):
        words_a, words_b = per_language[a], per_language[b]
        lines = {
            f"{words_a[key]} {words_b[key]}"
            for key in words_a.keys() & words_b.keys()
            if copy_key(words_a[key]) != copy_key(words_b[key])
        }
        if lines:
            out[(a, b)] = sorted(lines)
    return out


def _licence(wheel: zipfile.ZipFile) -> str:
    """The text of Django's LICENSE in the wheel's metadata."""
    names = wheel.namelist()
    licence = next((n for n in names if n.endswith(".dist-info/licenses/LICENSE")), None)
    licence = licence or next(n for n in names if n.endswith(".dist-info/LICENSE"))
    return wheel.read(licence).decode("utf-8")


def _read_catalogs(wheel_path: Path, languages: tuple[str, ...], reader: Callable) -> tuple[dict, str]:
    """`reader(wheel, folder)` of every language but English, and Django's LICENSE text."""
    if "en" not in languages:
        raise SentenceSetError("the languages must include en (the English msgids are the source side)")
    with zipfile.ZipFile(wheel_path) as wheel:
        per_language = {code: reader(wheel, CATALOGS.get(code, code)) for code in languages if code != "en"}
        return per_language, _licence(wheel)


def _notice_head(out: Path, title: str, wheel_path: Path, version: str, licence_text: str) -> str:
    """Write Django's LICENSE into `out`; the NOTICE's title and source paragraph."""
    (out / "LICENSE.django").write_text(licence_text, encoding="utf-8")
    digest = hashlib.sha256(wheel_path.read_bytes()).hexdigest()
    return f"""{title}
{"=" * len(title)}

Source: the translation catalogs (django/conf/locale/*/LC_MESSAGES/*.po and
django/contrib/*/locale/*/LC_MESSAGES/*.po) of Django {version},
wheel {wheel_path.name} (sha256 {digest}).
Django and its translations are Copyright (c) Django Software Foundation and individual contributors,
distributed under the BSD 3-Clause licence (LICENSE.django in this folder).
Each catalog says: "This file is distributed under the same license as the Django package."
"""


def build(wheel_path: Path, out: Path, languages: tuple[str, ...], version: str) -> dict[str, list[str]]:
    """Write the aligned files, LICENSE and NOTICE; return the lines per language."""
    per_language, licence_text = _read_catalogs(wheel_path, languages, catalog_messages)
    english = sorted({m for messages in per_language.values() for m in messages})
    lines = {"en": english}
    lines |= {code: [per_language[code].get(m, "") for m in english] for code in per_language}
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.txt"):
        stale.unlink()
    for code, rows in lines.items():
        (out / f"{code}.txt").write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    head = _notice_head(out, "BridgeX shipped parallel sentence set", wheel_path, version, licence_text)
    counts = "\n".join(f"  {code}: {sum(1 for r in rows if r)}" for code, rows in lines.items())
    catalogs = ", ".join(f"{code}={folder}" for code, folder in CATALOGS.items())
    (out / "NOTICE").write_text(
        f"""{head}
Built by scripts/make_sentence_set.py: English = the msgid, other languages = the msgstr; kept
non-fuzzy singular messages whose English has at least {MIN_WORDS} words, with no placeholder, HTML tag
or entity (inner whitespace collapsed to one space), translated to something other than the English.
Catalog folders: {catalogs}.
Line i of every <lang>.txt is the same message; an empty line means that language lacks it.

Sentences per language ({len(english)} lines):
{counts}
""",
        encoding="utf-8",
    )
    return lines


def build_words(
    wheel_path: Path, out: Path, languages: tuple[str, ...], version: str
) -> dict[Pair, list[str]]:
    """Write the MUSE word files `<src>-<trg>.txt`, LICENSE and NOTICE; return the lines per pair."""
    per_language, licence_text = _read_catalogs(wheel_path, languages, catalog_words)
    english = {key: key[1] for words in per_language.values() for key in words}
    pairs = word_pairs({code: english if code == "en" else per_language[code] for code in languages})
    every = sum(len(line.encode("utf-8")) + 1 for lines in pairs.values() for line in lines)
    if every > MAX_WORD_BYTES:
        pairs = {pair: lines for pair, lines in pairs.items() if set(pair) & set(WORD_FOCUS)}
        kept = (
            f"All ordered pairs would take {every} bytes (over {MAX_WORD_BYTES}): kept the ordered pairs "
            f"with a side in {', '.join(WORD_FOCUS)}."
        )
    else:
        kept = f"Every ordered pair of the languages that has an entry ({every} bytes in all)."
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*-*.txt"):
        stale.unlink()
    for (a, b), lines in sorted(pairs.items()):
        (out / f"{a}-{b}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    head = _notice_head(out, "BridgeX shipped word test set (MUSE format)", wheel_path, version, licence_text)
    counts = "\n".join(
        f"  {a}-{b}: {len(lines)} entries, {len({line.split()[0] for line in lines})} source words"
        for (a, b), lines in sorted(pairs.items())
    )
    catalogs = ", ".join(f"{code}={folder}" for code, folder in CATALOGS.items())
    size = sum(len(line.encode("utf-8")) + 1 for lines in pairs.values() for line in lines)
    (out / "NOTICE").write_text(
        f"""{head}
Not used by any index build (builds take CLDR's dictionaries): a word test set from another source, for
`bridgex-index eval --test-dict-dir shipped` (and `calibrate`).

Built by scripts/make_sentence_set.py: English = the msgid, other languages = the msgstr; kept
non-fuzzy singular messages (a msgctxt allowed) whose English is one word of letters only, at least two
(Django's one-letter weekday initials are not words), translated to one token: no whitespace, no
placeholder, HTML tag or entity, not punctuation alone. Messages are aligned across languages by
(msgctxt, msgid), the first translation of a message in catalog order wins. A line of a pair is the two
languages' words of one message (English: the msgid), unless they are copies of each other
(bridgex_index.words.copy_key: normalised, accents dropped); identical lines are kept once, several lines
per source word are several gold translations. Lines sorted by code point.
Catalog folders: {catalogs}.
Pairs: {kept}

Entries per pair ({len(pairs)} files, {size} bytes):
{counts}
""",
        encoding="utf-8",
    )
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default=DJANGO_VERSION, help="Django version to download (pinned)")
    parser.add_argument("--wheel", type=Path, help="use this Django wheel instead of downloading one")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder of the sentences")
    parser.add_argument("--words-out", type=Path, default=DEFAULT_WORDS_OUT, help="output folder of words")
    parser.add_argument("--langs", default=",".join(LANGUAGES), help="comma-separated codes, en included")
    args = parser.parse_args(argv)
    languages = tuple(code.strip() for code in args.langs.split(",") if code.strip())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = args.wheel or fetch_wheel(args.version, Path(tmp))
            if not wheel.is_file():
                raise SentenceSetError(f"{wheel}: no such wheel")
            version = wheel.name.split("-")[1]
            lines = build(wheel, args.out, languages, version)
            words = build_words(wheel, args.words_out, languages, version)
    except (SentenceSetError, zipfile.BadZipFile, OSError) as exc:
        print(f"make_sentence_set: {exc}", file=sys.stderr)
        return 2
    print(f"{len(lines['en'])} lines written to {args.out}")
    for code, rows in lines.items():
        print(f"{code}\t{sum(1 for row in rows if row)}")
    print("pairs (sentences both sides have):")
    for a, b in itertools.combinations(lines, 2):
        print(f"{a}-{b}\t{sum(1 for x, y in zip(lines[a], lines[b], strict=True) if x and y)}")
    size = sum(len(line.encode("utf-8")) + 1 for rows in words.values() for line in rows)
    print(f"word pairs written to {args.words_out}: {len(words)} files, {size} bytes (entries per pair):")
    for (a, b), rows in sorted(words.items()):
        print(f"{a}-{b}\t{len(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
