"""Language codes and names: validation against CLDR (via babel), prompt names, high/low resource.

Languages are ISO 639-1 codes (`"sw"`). A code is accepted when babel has a CLDR locale for it; CLDR also
uses a few three-letter codes where ISO 639-1 has none (`"fil"`, `"haw"`), and those are accepted too.
Regional variants (`"pt-BR"`, `"en_US"`) are not language codes and are rejected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from babel import Locale, UnknownLocaleError

# The languages that serve as high-resource by default: the ones multilingual LLMs see most in pre-training.
# Every other index language is low-resource unless the user passes an explicit low-resource list.
DEFAULT_HIGH_RESOURCE: frozenset[str] = frozenset(
    {"en", "de", "fr", "es", "it", "pt", "zh", "ru", "ja", "nl"}
)

_CODE_SHAPE = re.compile(r"[a-z]{2,3}")


class UnknownLanguageError(ValueError):
    """A language code that babel (CLDR) does not know as a language locale."""

    def __init__(self, code: str) -> None:
        super().__init__(
            f"unknown language code {code!r} (expected an ISO 639-1 code babel knows, e.g. en, sw, he)"
        )
        self.code = code


def _locale(code: str) -> Locale:
    """The CLDR locale of a bare language code, or UnknownLanguageError."""
    if not _CODE_SHAPE.fullmatch(code):
        raise UnknownLanguageError(code)
    try:
        locale = Locale(code)
    except (UnknownLocaleError, ValueError) as exc:
        raise UnknownLanguageError(code) from exc
    if not locale.get_display_name(code):
        raise UnknownLanguageError(code)
    return locale


def validate_codes(codes: Iterable[str]) -> list[str]:
    """Strip, lower-case and de-duplicate (first occurrence wins) language codes; reject unknown ones."""
    if isinstance(codes, str):
        raise TypeError(f"expected a list of language codes, got the string {codes!r}")
    result: list[str] = []
    for raw in codes:
        code = raw.strip().lower()
        _locale(code)
        if code not in result:
            result.append(code)
    if not result:
        raise ValueError("no language codes given (expected at least one, e.g. en, sw, he)")
    return result


def prompt_name(code: str) -> str:
    """The language's own name in its own language (CLDR), first letter upper-cased: `sw` → Kiswahili."""
    name = _locale(code).get_display_name(code)
    return name[:1].upper() + name[1:]


def english_name(code: str) -> str:
    """The language's English name (CLDR): `sw` → Swahili."""
    return _locale(code).get_display_name("en")


def low_resource_set(langs: Sequence[str], explicit: Sequence[str] | None) -> set[str]:
    """The low-resource languages among `langs`: `explicit` if given, else those not in DEFAULT_HIGH_RESOURCE.

    Every code of `explicit` must be one of `langs` (an empty list means no language is low-resource).
    """
    if explicit is None:
        return {code for code in langs if code not in DEFAULT_HIGH_RESOURCE}
    chosen = {code.strip().lower() for code in explicit}
    strangers = sorted(chosen - set(langs))
    if strangers:
        raise ValueError(
            f"low-resource language(s) {', '.join(strangers)} not among the index languages "
            f"{', '.join(langs)}"
        )
    return chosen


def language_names(code: str) -> set[str]:
    """Every language's name in `code`'s own locale (CLDR), case-folded: what a test word that is only a
    language name looks like."""
    return {name.casefold() for name in _locale(code).languages.values()}
