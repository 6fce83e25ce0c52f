"""Build the shipped parallel sentence set from Django's translation catalogs.

Django (BSD-3-Clause) ships `.po` catalogs for about 100 languages in its wheel. Every catalog translates
the same English messages (the msgids), so aligning them by msgid gives a line-aligned parallel set:

    .venv/bin/python scripts/make_sentence_set.py                 # pip download django==PIN, then build
    .venv/bin/python scripts/make_sentence_set.py --wheel django-5.2.9-py3-none-any.whl

Kept: non-fuzzy, translated, singular messages whose English has at least four words, with no
placeholder (`%(name)s`, `%s`, `{0}`), HTML tag or entity in the English or the translation, and a
translation that differs from the English; inner whitespace (line breaks included) becomes one space.
Writes `index_builder/data/sentences/<lang>.txt` (line i is the same message in every file; empty where a
language lacks it), Django's LICENSE and a NOTICE, and prints the sentences per language and per pair.
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
from pathlib import Path

from babel.messages.pofile import read_po

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "index_builder" / "data" / "sentences"
DJANGO_VERSION = "5.2.9"
LANGUAGES = ("en", "fr", "es", "de", "it", "pt", "id", "ar", "he", "ja", "zh", "sw", "fi", "hu")
# Our code → Django's catalog folder. CLDR's `pt` (what the index's dictionaries use) is Brazilian
# Portuguese, so `pt` takes Django's pt_BR; `zh` takes Simplified Chinese.
CATALOGS = {"pt": "pt_BR", "zh": "zh_Hans"}
MIN_WORDS = 4
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


def catalog_messages(wheel: zipfile.ZipFile, folder: str) -> dict[str, str]:
    """msgid → translation for every kept message of one language, over all of Django's catalogs (sorted
    by path; the first translation of a msgid wins)."""
    names = sorted(n for n in wheel.namelist() if n.endswith(".po") and f"/locale/{folder}/" in n)
    if not names:
        raise SentenceSetError(f"the wheel has no catalog for locale {folder!r}")
    messages: dict[str, str] = {}
    for name in names:
        with contextlib.redirect_stdout(io.StringIO()):  # babel prints plural-form warnings
            catalog = read_po(io.BytesIO(wheel.read(name)))
        for message in catalog:
            english, translation = message.id, message.string
            if not english or message.fuzzy or not isinstance(english, str):
                continue
            if not isinstance(translation, str) or not translation.strip():
                continue
            english, translation = " ".join(english.split()), " ".join(translation.split())
            if len(english.split()) < MIN_WORDS or not is_sentence(english) or not is_sentence(translation):
                continue
            if translation == english:
                continue
            messages.setdefault(english, translation)
    return messages


def build(wheel_path: Path, out: Path, languages: tuple[str, ...], version: str) -> dict[str, list[str]]:
    """Write the aligned files, LICENSE and NOTICE; return the lines per language."""
    if "en" not in languages:
        raise SentenceSetError("the languages must include en (the English msgids are the source side)")
    with zipfile.ZipFile(wheel_path) as wheel:
        per_language = {
            code: catalog_messages(wheel, CATALOGS.get(code, code)) for code in languages if code != "en"
        }
        licence = next((n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")), None)
        licence = licence or next(n for n in wheel.namelist() if n.endswith(".dist-info/LICENSE"))
        licence_text = wheel.read(licence).decode("utf-8")
    english = sorted({m for messages in per_language.values() for m in messages})
    lines = {"en": english}
    lines |= {code: [per_language[code].get(m, "") for m in english] for code in per_language}
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.txt"):
        stale.unlink()
    for code, rows in lines.items():
        (out / f"{code}.txt").write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    (out / "LICENSE.django").write_text(licence_text, encoding="utf-8")
    digest = hashlib.sha256(wheel_path.read_bytes()).hexdigest()
    counts = "\n".join(f"  {code}: {sum(1 for r in rows if r)}" for code, rows in lines.items())
    catalogs = ", ".join(f"{code}={folder}" for code, folder in CATALOGS.items())
    (out / "NOTICE").write_text(
        f"""BridgeX shipped parallel sentence set
=====================================

Source: the translation catalogs (django/conf/locale/*/LC_MESSAGES/*.po and
django/contrib/*/locale/*/LC_MESSAGES/*.po) of Django {version},
wheel {wheel_path.name} (sha256 {digest}).
Django and its translations are Copyright (c) Django Software Foundation and individual contributors,
distributed under the BSD 3-Clause licence (LICENSE.django in this folder).
Each catalog says: "This file is distributed under the same license as the Django package."

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default=DJANGO_VERSION, help="Django version to download (pinned)")
    parser.add_argument("--wheel", type=Path, help="use this Django wheel instead of downloading one")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
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
    except (SentenceSetError, zipfile.BadZipFile, OSError) as exc:
        print(f"make_sentence_set: {exc}", file=sys.stderr)
        return 2
    print(f"{len(lines['en'])} lines written to {args.out}")
    for code, rows in lines.items():
        print(f"{code}\t{sum(1 for row in rows if row)}")
    print("pairs (sentences both sides have):")
    for a, b in itertools.combinations(lines, 2):
        print(f"{a}-{b}\t{sum(1 for x, y in zip(lines[a], lines[b], strict=True) if x and y)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
