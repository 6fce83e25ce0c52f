import pytest

from index_builder.indexing.dictionaries import Entry
from index_builder.indexing.probes import Probe, build_probes, complete_generation, token_languages

NAMES = {"en": "English", "sw": "Kiswahili", "he": "עברית", "ar": "العربية", "ja": "日本語", "zh": "中文"}


def _words(probe: Probe) -> list[tuple[str, str]]:
    return [(lang, probe.text[start:end]) for lang, start, end in probe.spans]


def test_probe_text_follows_the_template_in_both_directions():
    forward, mirror = build_probes(("en", "sw"), [Entry("dog", "mbwa")], NAMES)
    assert forward.text == 'English:"dog"→Kiswahili:"mbwa"'
    assert mirror.text == 'Kiswahili:"mbwa"→English:"dog"'
    assert forward.direction == ("en", "sw")
    assert mirror.direction == ("sw", "en")
    assert forward.pair == mirror.pair == ("en", "sw")
    assert forward.prompt_end is None
    assert "\u2192" in forward.text


def test_two_probes_per_entry_in_entry_order():
    probes = build_probes(("en", "sw"), [Entry("dog", "mbwa"), Entry("cat", "paka")], NAMES)
    assert [p.text for p in probes] == [
        'English:"dog"→Kiswahili:"mbwa"',
        'Kiswahili:"mbwa"→English:"dog"',
        'English:"cat"→Kiswahili:"paka"',
        'Kiswahili:"paka"→English:"cat"',
    ]


@pytest.mark.parametrize(
    ("pair", "entry"),
    [
        (("en", "he"), Entry("dog", "כלב")),
        (("ar", "he"), Entry("كلب", "כלב")),
        (("ja", "zh"), Entry("日曜日", "星期日")),
        (("en", "sw"), Entry("New York", "New York City")),
        (("en", "sw"), Entry('say "hi"', 'sema "jambo"')),
        (("en", "ja"), Entry("a", "東京→大阪")),
    ],
)
def test_spans_slice_out_exactly_the_words(pair, entry):
    forward, mirror = build_probes(pair, [entry], NAMES)
    source, target = pair
    assert _words(forward) == [(source, entry.source_word), (target, entry.target_word)]
    assert _words(mirror) == [(target, entry.target_word), (source, entry.source_word)]


def test_pair_is_sorted_when_the_dictionary_runs_from_the_later_language():
    forward, mirror = build_probes(("sw", "en"), [Entry("mbwa", "dog")], NAMES)
    assert forward.pair == mirror.pair == ("en", "sw")
    assert forward.text == 'Kiswahili:"mbwa"→English:"dog"'
    assert forward.direction == ("sw", "en")


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="'sampled'"):
        build_probes(("en", "sw"), [Entry("dog", "mbwa")], NAMES, mode="sampled")


def test_missing_prompt_name_is_rejected():
    with pytest.raises(ValueError, match="fi"):
        build_probes(("en", "fi"), [Entry("dog", "koira")], NAMES)


def test_generate_mode_stops_after_the_second_opening_quote():
    forward, mirror = build_probes(("en", "sw"), [Entry("dog", "mbwa")], NAMES, mode="generate")
    assert forward.text == 'English:"dog"→Kiswahili:"'
    assert forward.prompt_end == len(forward.text)
    assert _words(forward) == [("en", "dog")]
    assert mirror.text == 'Kiswahili:"mbwa"→English:"'
    assert _words(mirror) == [("sw", "mbwa")]


@pytest.mark.parametrize("continuation", ['mbwa"→English:"dog"', "mbwa\nEnglish", "mbwa\r\n", "mbwa"])
def test_complete_generation_cuts_at_newline_or_closing_quote(continuation):
    probe = build_probes(("en", "sw"), [Entry("dog", "mbwa")], NAMES, mode="generate")[0]
    done = complete_generation(probe, continuation)
    assert done.text == 'English:"dog"→Kiswahili:"mbwa"'
    assert _words(done) == [("en", "dog"), ("sw", "mbwa")]
    assert done.prompt_end == probe.prompt_end
    assert done.direction == probe.direction


def test_complete_generation_keeps_inner_spaces_and_trims_span_whitespace():
    probe = build_probes(("en", "he"), [Entry("dog", "כלב")], NAMES, mode="generate")[0]
    done = complete_generation(probe, " כלב גדול \nmore")
    assert done.text == 'English:"dog"→עברית:" כלב גדול "'
    assert _words(done) == [("en", "dog"), ("he", "כלב גדול")]


@pytest.mark.parametrize("continuation", ["", '"', "\n", "  \n"])
def test_empty_continuation_keeps_only_the_first_span(continuation):
    probe = build_probes(("en", "sw"), [Entry("dog", "mbwa")], NAMES, mode="generate")[0]
    done = complete_generation(probe, continuation)
    assert done.spans == probe.spans
    assert done.text.startswith(probe.text)
    assert done.text.endswith('"')


def test_complete_generation_rejects_teacher_forced_and_completed_probes():
    forced = build_probes(("en", "sw"), [Entry("dog", "mbwa")], NAMES)[0]
    with pytest.raises(ValueError):
        complete_generation(forced, "mbwa")
    generated = build_probes(("en", "sw"), [Entry("dog", "mbwa")], NAMES, mode="generate")[0]
    with pytest.raises(ValueError):
        complete_generation(complete_generation(generated, "mbwa"), "mbwa")


def test_token_languages_on_hand_made_offsets():
    probe = build_probes(("en", "sw"), [Entry("dog", "mbwa")], NAMES)[0]
    text = probe.text  # English:"dog"→Kiswahili:"mbwa"
    dog, mbwa = text.index("dog"), text.index("mbwa")
    offsets = [
        (0, 0),  # <bos>
        (0, 7),  # English
        (7, 9),  # :"
        (dog, dog + 2),  # do
        (dog + 2, dog + 3),  # g
        (dog + 3, dog + 5),  # "→
        (dog + 5, mbwa - 2),  # Kiswahili
        (mbwa - 2, mbwa),  # :"
        (mbwa, mbwa + 4),  # mbwa
        (mbwa + 4, mbwa + 5),  # "
        (0, 0),  # <pad>
    ]
    assert token_languages(offsets, probe.spans, ["sw", "en"]) == [-1, -1, -1, 1, 1, -1, -1, -1, 0, -1, -1]


def test_token_straddling_quote_and_word_counts_for_the_word():
    probe = build_probes(("en", "sw"), [Entry("dog", "mbwa")], NAMES)[0]
    dog, mbwa = probe.text.index("dog"), probe.text.index("mbwa")
    offsets = [(dog - 2, dog + 1), (dog + 1, dog + 3), (mbwa - 2, mbwa + 4), (mbwa + 4, mbwa + 5)]
    assert token_languages(offsets, probe.spans, ["en", "sw"]) == [0, 0, 1, -1]


def test_token_touching_a_word_without_overlap_does_not_count():
    probe = build_probes(("en", "sw"), [Entry("dog", "mbwa")], NAMES)[0]
    dog = probe.text.index("dog")
    assert token_languages([(dog - 2, dog), (dog + 3, dog + 4)], probe.spans, ["en", "sw"]) == [-1, -1]


def test_token_languages_rejects_a_span_language_not_listed():
    probe = build_probes(("en", "sw"), [Entry("dog", "mbwa")], NAMES)[0]
    with pytest.raises(ValueError, match="sw"):
        token_languages([(0, 3)], probe.spans, ["en"])
