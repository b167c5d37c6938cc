"""Per-language figures without engines: rates and differences per language, language
identification, dropped spans, and how the report shows them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from whisper_quant.metrics import CER, WER, error_rate
from whisper_quant.per_language import (
    EngineOutput,
    LabelledClip,
    language_id,
    language_sections,
)
from whisper_quant.report import (
    LANGUAGE_HEADERS,
    RECIPE_HEADERS,
    language_rows,
    recipe_headers,
    recipe_rows,
)

ENGLISH = "the cat sat on the mat"  # 6 words, 17 characters
RUSSIAN = "мама мыла раму"  # 3 words, 12 characters


def fixture_clips():
    """12 English clips read by one speaker, 12 Russian clips each by its own speaker."""
    clips = [LabelledClip(f"en{i}", "en", ENGLISH, "speaker:a") for i in range(12)]
    clips += [LabelledClip(f"ru{i}", "ru", RUSSIAN, f"speaker:r{i}") for i in range(12)]
    return clips


def coverage(dropped=()):
    return {"covered_s": 2.0, "original_s": 2.0, "shared_s": 2.0, "dropped_spans": list(dropped)}


@pytest.fixture(scope="module")
def sections():
    clips = fixture_clips()
    original = EngineOutput(
        transcripts={c.name: c.reference for c in clips},
        languages={c.name: c.language for c in clips},
        coverage={c.name: coverage() for c in clips},
    )
    transcripts = {c.name: c.reference for c in clips}
    transcripts["en0"] = "the cat sat on mat"  # one word, 3 characters ("the") dropped
    transcripts["ru0"] = "мама мыла рану"  # one character changed
    languages = {c.name: c.language for c in clips}
    languages["en1"] = "de"
    languages["ru1"] = "uk"
    languages["ru2"] = None  # nothing detected
    cover = {c.name: coverage() for c in clips}
    cover["ru3"] = {**coverage([[0.0, 6.0], [8.0, 14.0]]), "shared_s": 1.0}
    quantized = EngineOutput(transcripts, languages, cover)
    unlabelled = LabelledClip("x", "", ENGLISH, "clip:x")
    return language_sections(
        [*clips, unlabelled], {"original": original, "quantized": quantized}, "original"
    )


def test_error_rate_kind_asks_for_words_or_characters_whatever_the_language():
    assert error_rate(ENGLISH, ENGLISH[:-1], "en", kind=CER).kind == CER
    assert error_rate(RUSSIAN, RUSSIAN, "ru", kind=WER).reference_length == 3
    assert error_rate(RUSSIAN, RUSSIAN, "ru").kind == CER  # the language's default
    with pytest.raises(ValueError, match="kind"):
        error_rate(ENGLISH, ENGLISH, kind="BLEU")


def test_language_id_counts_matches_and_what_was_heard_instead():
    found = language_id(
        ["ru", "ru", "ru", "ru"], ["ru", "uk", None, "uk"], original=["ru", "uk", "ru", "ru"]
    )
    assert found.clips == 4
    assert found.matches_label == 0.25
    assert found.matches_original == 0.5  # clips 0 and 1
    assert found.heard_instead == {"uk": 2, "none": 1}
    assert list(found.heard_instead) == ["uk", "none"]  # most frequent first
    assert language_id(["en"], ["en"]).matches_original is None
    with pytest.raises(ValueError):
        language_id(["en", "en"], ["en"])


def test_one_section_per_labelled_language_in_order_with_its_headline(sections):
    assert list(sections) == ["en", "ru"]  # the unlabelled clip is left out
    en, ru = sections["en"], sections["ru"]
    assert (en.headline, ru.headline) == (WER, CER)
    assert (en.clips, en.scored_clips, en.reference_words) == (12, 12, 72)
    assert (ru.reference_words, ru.reference_characters) == (36, 144)
    assert (en.bootstrap_unit_count, ru.bootstrap_unit_count) == (1, 12)


def test_rates_and_paired_differences_per_language(sections):
    en = sections["en"].engines["quantized"]
    assert en.wer.rate == pytest.approx(1 / 72)
    assert en.wer_difference.difference == pytest.approx(1 / 72)
    assert en.cer_difference.difference == pytest.approx(3 / (12 * 17))
    ru = sections["ru"].engines["quantized"]
    assert ru.cer.rate == pytest.approx(1 / 144)
    assert ru.cer_difference.difference == pytest.approx(1 / 144)
    assert ru.wer_difference.difference == pytest.approx(1 / 36)
    original = sections["ru"].engines["original"]
    assert original.cer.rate == 0.0
    assert original.cer_difference is None and original.wer_difference is None


def test_one_speaker_gives_no_cluster_interval_but_one_over_its_clips(sections):
    en = sections["en"].engines["quantized"]
    assert en.wer.interval is None and en.wer.units == 1
    assert en.wer_difference.interval is None
    low, high = en.wer_difference.interval_over_clips
    assert low <= en.wer_difference.difference <= high
    # Twelve speakers: the cluster interval exists and holds the figure.
    ru = sections["ru"].engines["quantized"]
    low, high = ru.cer_difference.interval
    assert ru.cer_difference.units == 12
    assert low <= ru.cer_difference.difference <= high


def test_language_identification_and_dropped_spans_per_language(sections):
    en = sections["en"].engines["quantized"].language_id
    assert en.matches_label == pytest.approx(11 / 12)
    assert en.matches_original == pytest.approx(11 / 12)
    assert en.heard_instead == {"de": 1}
    ru = sections["ru"].engines["quantized"]
    assert ru.language_id.matches_label == pytest.approx(10 / 12)
    assert ru.language_id.heard_instead == {"none": 1, "uk": 1}
    assert (ru.dropped_spans, ru.clips_with_dropped_span) == (2, 1)
    assert ru.speech_coverage_vs_original == pytest.approx(23 / 24)
    assert sections["en"].engines["quantized"].dropped_spans == 0


def test_no_original_means_no_differences_and_no_agreement():
    clips = fixture_clips()[:3]
    only = EngineOutput({c.name: c.reference for c in clips}, {c.name: "en" for c in clips})
    section = language_sections(clips, {"quantized": only}, None)["en"]
    figures = section.engines["quantized"]
    assert figures.wer_difference is None and figures.language_id.matches_original is None
    assert figures.speech_coverage_vs_original is None
    assert figures.wer.interval_over_clips is None  # 3 clips: fewer than an interval needs


def engine_stats(**overrides):
    fields = dict(
        median_latency_s=1.0,
        best_latency_s=1.0,
        speedup_comparable=True,
        ms_per_token_steps=2.0,
        memory_mib=100.0,
        peak_memory_mib=10.0,
        disk_mib=50.0,
        wer=0.1,
        wer_interval=None,
        interval_n=2,
        wer_difference=None,
        wer_difference_interval=None,
        agreement_wer_vs_original=None,
        agreement_clips=0,
    )
    return SimpleNamespace(**{**fields, **overrides})


def test_the_report_shows_a_row_per_language_and_engine_with_the_headline_bold(sections):
    report = SimpleNamespace(per_language=sections)
    rows = language_rows(report)
    assert [row[:2] for row in rows] == [
        ["en", "original"],
        ["en", "quantized"],
        ["ru", "original"],
        ["ru", "quantized"],
    ]
    assert all(len(row) == len(LANGUAGE_HEADERS) for row in rows)
    en, ru = rows[1], rows[3]
    assert en[4].startswith("**1.4%**") and en[4].endswith("over clips")  # WER, one speaker
    assert ru[2].startswith("**0.7%** [")  # CER over twelve speakers
    assert not ru[2].endswith("over clips")
    assert ru[3].startswith("+0.7% [")
    assert (ru[6], ru[7], ru[8], ru[9]) == ("83.3%", "83.3%", "none 1, uk 1", "2 (1)")
    assert rows[0][7] == "(reference)"


def test_the_recipe_table_gets_columns_per_language_only_with_several(sections):
    engines = {"original": engine_stats(), "quantized": engine_stats(median_latency_s=0.5)}
    report = SimpleNamespace(per_language=sections, engines=engines)
    headers = recipe_headers(report)
    assert headers[len(RECIPE_HEADERS) :] == (
        "CER − original (en)",
        "Language ID = original's (en)",
        "CER − original (ru)",
        "Language ID = original's (ru)",
    )
    rows = recipe_rows(report)
    assert all(len(row) == len(headers) for row in rows)
    assert rows[0][len(RECIPE_HEADERS) :] == ["", "(reference)", "", "(reference)"]
    quantized = rows[1][len(RECIPE_HEADERS) :]
    assert quantized[1] == "91.7%" and quantized[3] == "83.3%"
    assert quantized[2].startswith("+0.7% [")
    one = SimpleNamespace(per_language={"en": sections["en"]}, engines=engines)
    assert recipe_headers(one) == RECIPE_HEADERS
    assert all(len(row) == len(RECIPE_HEADERS) for row in recipe_rows(one))


# --- scripts/language_subsets.py ---------------------------------------------------------------


def _language_subsets():
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "language_subsets.py"
    spec = importlib.util.spec_from_file_location("language_subsets", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("language_subsets", module)
    spec.loader.exec_module(module)
    return module


def _utterance(i: int, original: str, quantized: str, heard: str) -> dict:
    return {
        "clip": f"audio/ru/{i}.flac",
        "reference": RUSSIAN,
        "language": "ru",
        "original": original,
        "quantized": quantized,
        "original_language": heard,
        "quantized_language": heard,
    }


def test_language_subsets_pairs_another_build_and_leaves_out_clips_the_original_mishears():
    subsets = _language_subsets()
    # 12 clips heard as Russian and written right by everyone; 2 heard as Ukrainian, where the
    # original makes 1 character error, the first run's quantized engine 3 (three inserted
    # letters; CER ignores spaces) and the other build 18.
    good = [_utterance(i, RUSSIAN, RUSSIAN, "ru") for i in range(12)]
    misheard = [_utterance(i, "мама мила раму", RUSSIAN + " абв", "uk") for i in (12, 13)]
    # The run's own clip order: the bootstrap follows it, not the utterances' sort.
    base = {"utterances": misheard + good, "clips": [{"name": u["clip"]} for u in good + misheard]}
    other = {
        "utterances": [
            {**u, "quantized": u["quantized"] + " гдеёжзийклмнопр", "quantized_language": "be"}
            if u["original_language"] == "uk"
            else u
            for u in base["utterances"]
        ]
    }
    rows = subsets.figures(base, {"other": other})
    by = {(r["subset"], r["engine"]): r for r in rows}
    every, heard = subsets.SUBSETS
    assert by[every, "quantized"]["clips"] == 14 and by[heard, "quantized"]["clips"] == 12
    assert by[every, "other"]["difference"] > by[every, "quantized"]["difference"] > 0
    assert by[heard, "quantized"]["difference"] == by[heard, "other"]["difference"] == 0
    # The other build's detected languages are its own: 2 of 14 differ from the original's.
    assert by[every, "other"]["language_matches_original"] == pytest.approx(12 / 14)
    assert by[every, "quantized"]["language_matches_original"] == 1.0
    assert by[heard, "other"]["language_matches_original"] == 1.0
    assert "| original hears the label (12) | ru | other | CER +0.00" in subsets.markdown(rows)
    # A run of other clips or references cannot be paired.
    with pytest.raises(SystemExit, match="differ"):
        subsets.figures(base, {"short": {"utterances": other["utterances"][:-1]}})


def test_language_subsets_counterfactual_gives_changed_languages_the_originals_text():
    subsets = _language_subsets()
    good = [_utterance(i, RUSSIAN, RUSSIAN, "ru") for i in range(12)]
    # Clip 12: the quantized engine hears Belarusian and writes other text (a changed
    # language); clip 13: same language, three inserted letters (text alone).
    changed = {**_utterance(12, RUSSIAN, "гдеёжзийклмнопр", "ru"), "quantized_language": "be"}
    same = _utterance(13, RUSSIAN, RUSSIAN + " абв", "ru")
    rows = good + [changed, same]
    base = {"utterances": rows, "clips": [{"name": u["clip"]} for u in rows]}
    by = {(r["subset"], r["engine"]): r for r in subsets.figures(base, {}, if_agreed=True)}
    every = by[subsets.SUBSETS[0], "quantized"]
    agreed = by[subsets.COUNTERFACTUAL, "quantized"]
    assert every["language_matches_original"] == pytest.approx(13 / 14)
    assert agreed["language_matches_original"] == 1.0
    # Only clip 13's three letters are left.
    assert 0 < agreed["difference"] < every["difference"]
    assert agreed["difference"] == pytest.approx(3 / (14 * len(RUSSIAN.replace(" ", ""))))
    assert (subsets.COUNTERFACTUAL, "quantized") not in {
        (r["subset"], r["engine"]) for r in subsets.figures(base, {})
    }


def test_language_subsets_pairs_a_run_of_fewer_languages_on_the_languages_it_holds():
    """A first run of English and Russian, another build's run of Russian only (benchmark.py
    --languages ru): the rows are Russian's, with the same figures as when the other run holds
    both languages; a Russian clip missing from it is still refused."""
    subsets = _language_subsets()
    russian = [_utterance(i, RUSSIAN, RUSSIAN + (" абв" if i < 3 else ""), "ru") for i in range(8)]
    english = [
        {
            **_utterance(i, "the cat sat", "the cat sat down", "en"),
            "clip": f"audio/en/{i}.flac",
            "reference": "the cat sat",
            "language": "en",
        }
        for i in range(8, 12)
    ]
    base = {
        "utterances": russian + english,
        "clips": [{"name": u["clip"]} for u in russian + english],
    }
    worse = [{**u, "quantized": u["quantized"] + " где"} for u in russian]
    both = subsets.figures(base, {"other": {"utterances": worse + english}})
    only = subsets.figures(base, {"other": {"utterances": worse}})
    assert {r["language"] for r in both} == {"en", "ru"}
    assert {r["language"] for r in only} == {"ru"}
    assert only == [r for r in both if r["language"] == "ru"]
    assert {r["engine"] for r in only} == {"quantized", "other"}
    with pytest.raises(SystemExit, match="differ"):
        subsets.figures(base, {"short": {"utterances": worse[:-1]}})
