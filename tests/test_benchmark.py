"""The benchmark CLI: figures for every engine, failed and unscored clips reported, not fatal."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from whisper_quant.bench import read_references
from whisper_quant.cli import benchmark_main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(built_tiny_en, models_dir, clip, tmp_path_factory):
    """One run on two good clips, one unscored clip and one that is not audio."""
    work = tmp_path_factory.mktemp("bench")
    clips = [shutil.copy(clip(name), work) for name in ("goforward.wav", "cards-005.wav")]
    unscored = shutil.copy(clip("cards-001.wav"), work / "unscored.wav")
    broken = work / "broken.wav"
    broken.write_text("this is not audio")
    refs = work / "refs.tsv"
    refs.write_text(
        "goforward.wav\tgo forward ten meters\ncards-005.wav\t"
        "eight of spades four of clubs seven of hearts\n"
    )
    out = work / "report.json"
    code = benchmark_main(
        [
            *map(str, [*clips, unscored, broken]),
            "--references",
            str(refs),
            "--models-dir",
            str(models_dir),
            "--model",
            "tiny.en",
            "--engines",
            "original,quantized,onnx-fp32",
            "--repeat",
            "2",
            "--json",
            str(out),
            "--markdown",
            str(work / "report.md"),
            "--plot",
            str(work / "report.png"),
        ]
    )
    return code, json.loads(out.read_text()), work


def test_reports_every_engine_with_positive_figures(report):
    _, data, _ = report
    assert data["model"] == "tiny.en"
    assert set(data["engines"]) == {"original", "quantized", "onnx-fp32"}
    for engine in data["engines"].values():
        assert engine["median_latency_s"] > 0 and engine["rtf"] > 0
        print(f"RTF {engine['label']}: {engine['rtf']:.3f}")  # a figure, not a bound
        assert engine["memory_mib"] > 10
        assert engine["peak_memory_mib"] >= 0
        assert engine["disk_mib"] > 10
        # tiny.en hears "clubs" as "close" in cards-005: 1 error in 13 normalised words.
        assert engine["wer"] == pytest.approx(1 / 13)
        assert engine["transcripts"]["goforward.wav"] == "Go forward 10 meters."
    summary = data["summary"]
    # The speed-up splits into the runtime's part and int8's, which multiply back to it.
    assert summary["speedup_from_runtime"] * summary["speedup_from_int8"] == pytest.approx(
        summary["speedup"]
    )
    assert summary["words_scored"] == 13  # "go forward 10 meters" + 9 normalised words
    assert summary["wer_delta"] == 0.0
    assert "median" in data["methods"]["timing"] and "RSS" in data["methods"]["memory"]
    assert "slope" in data["methods"]["per_token"] and "torch" in data["methods"]["features"]


def test_reports_what_ran_and_every_part_of_the_memory_figure(report):
    _, data, _ = report
    for name, engine in data["engines"].items():
        # held = total - baseline, all three published
        assert engine["memory_total_mib"] - engine["memory_baseline_mib"] == pytest.approx(
            engine["memory_mib"]
        )
        assert engine["memory_baseline_mib"] > 100, name  # the libraries, torch included
        assert engine["first_step_ms"] > 0 and engine["windows"] == 3, name
        assert engine["fallback_windows"] == 0, name
    fused = {n: e["encoder_attention_fused"] for n, e in data["engines"].items()}
    assert fused == {"original": False, "quantized": True, "onnx-fp32": True}
    options = data["engines"]["quantized"]["runtime"]["session_options"]
    assert options["enable_cpu_mem_arena"] is False and options["intra_op_num_threads"] == 2
    changes = " ".join(data["engines"]["quantized"]["runtime"]["graph_changes"])
    assert "cross-attention" in changes and "MultiHeadAttention" in changes
    assert data["engines"]["quantized"]["median_section_s"]["cross_kv"] > 0
    # Every timed run's engine order, with the seed that shuffled it.
    assert len(data["orders"]) == 2 * 3  # 2 passes x 3 usable clips
    assert all(sorted(o["order"]) == sorted(data["engines"]) for o in data["orders"])
    assert len({o["seed"] for o in data["orders"]}) == len(data["orders"])
    machine = data["machine"]
    assert machine["cpu"] in machine["note"] and machine["note"].startswith("measured on one")
    assert isinstance(machine["cpu_flags"], list)


def test_two_scored_clips_give_no_interval_but_their_count(report):
    _, data, work = report
    assert data["settings"]["bootstrap"]["unit"] == "clip"
    assert data["settings"]["bootstrap"]["units"] == 2
    for name, engine in data["engines"].items():
        assert engine["wer_interval"] is None and engine["interval_n"] == 2, name
        assert engine["wer_difference_interval"] is None, name
        # Both ways: as Whisper's normaliser leaves it, and with the extra rules.
        assert engine["wer_extra_rules"] == pytest.approx(1 / 13), name
    assert data["settings"]["wer_extra_rules"] == [
        "symbol-only tokens dropped",
        "single digits joined (English)",
    ]
    assert "EnglishTextNormalizer" in data["methods"]["normalisation"]
    markdown = (work / "report.md").read_text()
    assert "7.7% (n=2)" in markdown and "n=2 is shown instead" in markdown


def test_fp32_onnx_agrees_with_the_original_word_for_word(report):
    _, data, _ = report
    assert data["engines"]["onnx-fp32"]["agreement_wer_vs_original"] == 0.0


def test_a_broken_clip_fails_alone_with_its_reason(report):
    code, data, _ = report
    assert code == 1  # a failed clip is worth a non-zero exit, after the others ran
    assert list(data["failed_clips"]) == ["broken.wav"]
    assert "decode" in data["failed_clips"]["broken.wav"].lower()
    assert set(data["engines"]["quantized"]["transcripts"]) == {
        "goforward.wav",
        "cards-005.wav",
        "unscored.wav",
    }


def test_a_clip_without_reference_is_left_out_of_wer_and_said_so(report):
    _, data, work = report
    assert data["unscored_clips"] == ["unscored.wav"]
    markdown = (work / "report.md").read_text()
    assert "Left out of WER (no reference): unscored.wav" in markdown
    assert "broken.wav" in markdown
    assert (work / "report.png").stat().st_size > 10_000


def test_a_missing_model_names_the_build_command(tmp_path, clip, capsys):
    code = benchmark_main([str(clip("goforward.wav")), "--models-dir", str(tmp_path)])
    assert code == 2
    assert "python build_model.py --model tiny.en" in capsys.readouterr().err


def test_references_file_format(tmp_path):
    refs = tmp_path / "refs.tsv"
    refs.write_text("# comment\n\na.wav\tHello there\nsub/b.wav\tworld\n")
    assert read_references(refs) == {"a.wav": "Hello there", "b.wav": "world"}
    refs.write_text("no tab here\n")
    with pytest.raises(ValueError, match="TAB"):
        read_references(refs)


def test_joined_clips_are_2_to_10_seconds_of_the_shipped_speech(tmp_path, references):
    """scripts/joined_clips.py: the longer clips the README's second benchmark table uses."""
    import subprocess
    import sys
    import wave
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "joined_clips.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    joined = read_references(tmp_path / "refs.tsv")
    assert len(joined) == 6
    shipped = " ".join(references.values()).split()
    for name, text in joined.items():
        with wave.open(str(tmp_path / name)) as clip:
            seconds = clip.getnframes() / clip.getframerate()
        assert 2.0 <= seconds <= 10.0, name
        assert set(text.split()) <= set(shipped), name


def test_a_dataset_benchmark_reports_intervals_and_paired_differences(
    built_tiny_en, models_dir, clip, tmp_path
):
    """--dataset on an audiofolder the test writes: WER with its interval for every engine,
    and each engine's paired difference from the original. An interval needs 10 clips: the
    six shipped clips and copies of four of them."""
    folder = tmp_path / "folder"
    folder.mkdir()
    rows = ["file_name,transcription"]
    references = read_references(clip("refs.tsv"))
    names = sorted(references) + ["goforward.wav", *sorted(references)[:3]]
    for i, name in enumerate(names):
        copy = name if i < len(references) else f"copy-{name}"
        shutil.copy(clip(name), folder / copy)
        rows.append(f"{copy},{references[name]}")
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "report.json"
    code = benchmark_main(
        [
            "--dataset",
            str(folder),
            "--models-dir",
            str(models_dir),
            "--model",
            "tiny.en",
            "--engines",
            "original,quantized",
            "--repeat",
            "1",
            "--json",
            str(out),
            "--markdown",
            str(tmp_path / "report.md"),
            "--tradeoff-plot",
            str(tmp_path / "tradeoff.png"),
        ]
    )
    assert code == 0
    assert (tmp_path / "tradeoff.png").stat().st_size > 0
    data = json.loads(out.read_text())
    for engine in data["engines"].values():
        low, high = engine["wer_interval"]
        assert low <= engine["wer"] <= high
        assert engine["interval_n"] == 10
        # normalised: cards 3 + 4 + 3 + 1 ("55") + 9, goforward 4, copies 4 + 3 + 4 + 3
        assert engine["reference_words"] == 38
    quantized = data["engines"]["quantized"]
    low, high = quantized["wer_difference_interval"]
    assert low <= quantized["wer_difference"] <= high
    assert data["engines"]["original"]["wer_difference"] is None
    assert [u["clip"] for u in data["utterances"]] and len(data["utterances"]) == 10
    assert "95% bootstrap" in (tmp_path / "report.md").read_text()


def test_a_dataset_of_two_languages_is_reported_per_language_and_filtered_by_languages(
    built_tiny_en, models_dir, clip, tmp_path
):
    """Ten English clips (the shipped six and copies), two Spanish and one French clip of
    eval/; --languages en,es leaves the French one out. tiny.en detects English everywhere,
    so the Spanish clips are heard as English by every engine, the same as the original."""
    eval_dir = Path(__file__).resolve().parents[1] / "eval"
    metadata = (eval_dir / "metadata.csv").read_text(encoding="utf-8").splitlines()
    eval_rows = {row["file_name"]: row for row in csv.DictReader(metadata)}
    folder = tmp_path / "folder"
    folder.mkdir()
    rows = [["file_name", "transcription", "speaker", "language"]]
    references = read_references(clip("refs.tsv"))
    names = sorted(references) + ["goforward.wav", *sorted(references)[:3]]
    for i, name in enumerate(names):
        copy = name if i < len(references) else f"copy-{name}"
        shutil.copy(clip(name), folder / copy)
        rows.append([copy, references[name], "shipped", "en"])
    for name in (
        "audio/es/asterisk-conf-extended.flac",
        "audio/es/asterisk-agent-incorrect.flac",
        "audio/fr/asterisk-conf-extended.flac",
    ):
        row = eval_rows[name]
        target = f"{row['language']}-{Path(name).name}"
        shutil.copy(eval_dir / name, folder / target)
        rows.append([target, row["transcription"], row["speaker"], row["language"]])
    with (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "report.json"
    markdown = tmp_path / "report.md"
    code = benchmark_main(
        [
            "--dataset",
            str(folder),
            "--languages",
            "en,es",
            "--models-dir",
            str(models_dir),
            "--model",
            "tiny.en",
            "--engines",
            "original,quantized",
            "--repeat",
            "1",
            "--json",
            str(out),
            "--markdown",
            str(markdown),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert len(data["clips"]) == 12 and not any(c["name"].startswith("fr-") for c in data["clips"])
    assert {c["language"] for c in data["clips"]} == {"en", "es"}
    sections = data["per_language"]
    assert list(sections) == ["en", "es"]
    assert (sections["en"]["headline"], sections["es"]["headline"]) == ("WER", "CER")
    assert (sections["en"]["clips"], sections["es"]["clips"]) == (10, 2)
    spanish = sections["es"]["engines"]["quantized"]
    assert spanish["language_id"]["matches_label"] == 0.0
    assert spanish["language_id"]["matches_original"] == 1.0
    assert spanish["language_id"]["heard_instead"] == {"en": 2}
    assert spanish["cer"]["interval"] is None and spanish["cer"]["units"] == 1
    assert spanish["cer_difference"]["difference"] is not None
    english = sections["en"]["engines"]["quantized"]
    assert english["language_id"]["matches_label"] == 1.0
    # Ten clips of one speaker: no cluster interval, one over the clips.
    low, high = english["wer_difference"]["interval_over_clips"]
    assert low <= english["wer_difference"]["difference"] <= high
    assert english["dropped_spans"] >= 0
    for engine in ("original", "quantized"):
        assert sections["en"]["engines"][engine]["wer"]["reference_length"] == 38
        assert set(data["engines"][engine]["detected_languages"].values()) == {"en"}
    assert len(data["utterances"]) == 12
    for row in data["utterances"]:
        assert row["original_language"] == row["quantized_language"] == "en"
        assert row["language"] == ("es" if row["clip"].startswith("es-") else "en")
    text = markdown.read_text()
    assert "| es | quantized |" in text and "CER − original (es)" in text


# --- the like-for-like baseline on a tiny random model ----------------------------------------


def test_pytorch_through_the_same_loop_splits_the_speed_up_and_every_engines_sections_add_up(
    built_tiny, tmp_path
):
    """benchmark.py --engines original,pytorch,onnx-fp32,quantized on the tiny random model,
    through generate for the original (no --fixed-tokens), a few tokens per window: the JSON
    has the pytorch engine, the three-way split, coverage per engine, and timed sections that
    add up to at least 90% of every engine's median latency."""
    from fixed_tokens import write_noise

    clip = write_noise(tmp_path / "noise.wav", 3.0)
    out = tmp_path / "report.json"
    code = benchmark_main(
        [
            str(clip),
            "--models-dir",
            str(built_tiny.folder.parent),
            "--model",
            built_tiny.folder.name,
            "--engines",
            "original,pytorch,onnx-fp32,quantized",
            "--no-fallback",
            "--max-new-tokens",
            "24",
            "--repeat",
            "2",
            "--json",
            str(out),
            "--markdown",
            str(tmp_path / "report.md"),
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    engines = data["engines"]
    assert list(engines) == ["original", "pytorch", "onnx-fp32", "quantized"]
    assert engines["pytorch"]["label"] == "PyTorch fp32, same loop"
    assert "studio's long-form loop" in engines["pytorch"]["runtime"]["runtime"]
    timed = ("features", "encoder", "cross_kv", "language", "decoder")
    for name, engine in engines.items():
        sections = engine["median_section_s"]
        assert sections["decoder"] > sections["first_step"] > 0, name
        assert sections["other"] >= 0, name
        assert sum(sections.get(k, 0.0) for k in timed) >= 0.9 * engine["median_latency_s"], name
        assert engine["section_share"] >= 0.9, name
        # The same model, or its exports, decoding the same clip: nothing dropped.
        assert 0 <= engine["speech_coverage_vs_original"] <= 1, name
        assert set(engine["clip_coverage"]) == {"noise.wav"}, name
        assert isinstance(engine["clips_with_dropped_span"], int), name
    # The original is the reference of the coverage figures.
    assert engines["original"]["speech_coverage_vs_original"] in (None, 1.0)
    summary = data["summary"]
    split = summary["speedup_split"]
    assert set(split) == {"original_to_pytorch", "pytorch_to_onnx-fp32", "onnx-fp32_to_quantized"}
    product = split["original_to_pytorch"] * split["pytorch_to_onnx-fp32"]
    assert product * split["onnx-fp32_to_quantized"] == pytest.approx(summary["speedup"])
    assert summary["speedup_vs_pytorch"] == pytest.approx(
        split["pytorch_to_onnx-fp32"] * split["onnx-fp32_to_quantized"]
    )
    assert "coverage" in data["methods"] and "speedup_split" in data["methods"]
    markdown = (tmp_path / "report.md").read_text()
    assert "Speech covered (of original's)" in markdown and "| other |" in markdown
    assert "The speed-up in three parts" in markdown


# --- --fixed-tokens on a tiny random model ---------------------------------------------------


def test_fixed_tokens_every_engine_decodes_exactly_n_tokens_per_window(
    built_tiny, tmp_path, capsys
):
    """The 80-mel tiny random model: random weights would decode to the token limit, and each
    engine differently; with --fixed-tokens every engine does the same work on the same
    tokens. Its build has ct2/, so faster-whisper is asked for and skipped with a note."""
    from fixed_tokens import check_fixed_token_report, run_fixed_token_benchmark

    code, data, markdown = run_fixed_token_benchmark(
        built_tiny.folder, tmp_path, 6, engines="original,onnx-fp32,quantized,faster-whisper"
    )
    assert code == 0
    check_fixed_token_report(data, markdown, 6)
    out = capsys.readouterr().out
    assert "note: faster-whisper skipped" in out and "cannot force the same tokens" in out
    assert list(data["skipped_engines"]) == ["faster-whisper"]
    assert "Skipped faster-whisper" in markdown


def test_fixed_tokens_force_the_same_token_ids_in_every_engine(built_tiny, tmp_path):
    from fixed_tokens import check_engines_force_the_same_tokens

    check_engines_force_the_same_tokens(built_tiny.folder, tmp_path, 5)


def test_fixed_tokens_with_only_engines_that_cannot_is_refused(built_tiny, tmp_path, capsys):
    code = benchmark_main(
        [
            "--models-dir",
            str(built_tiny.folder.parent),
            "--model",
            built_tiny.folder.name,
            "--engines",
            "faster-whisper",
            "--fixed-tokens",
            "4",
        ]
    )
    assert code == 2
    captured = capsys.readouterr()
    assert "note: faster-whisper skipped" in captured.out
    assert "none of the engines" in captured.err


@pytest.mark.parametrize("value", ["0", "445", "ten"])
def test_fixed_tokens_out_of_range_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        benchmark_main(["--fixed-tokens", value])
    assert exit_info.value.code == 2
    assert "from 1 to 444" in capsys.readouterr().err


def test_scaling_script_tabulates_every_model_on_equal_work(built_tiny, tmp_path):
    """scripts/scaling.py on the tiny random model: one row per engine, the figures the
    README's scaling table needs as medians of 3 passes with their spread, a plot."""
    import subprocess
    import sys
    from pathlib import Path

    from fixed_tokens import write_noise

    root = Path(__file__).resolve().parent.parent
    clip = write_noise(tmp_path / "noise.wav", 3.0)
    subprocess.run(
        [
            sys.executable,
            str(root / "scripts" / "scaling.py"),
            str(built_tiny.folder),
            "--clip",
            str(clip),
            "--fixed-tokens",
            "8",
            "--output-dir",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    data = json.loads((tmp_path / "scaling.json").read_text())
    (row,) = data["rows"]
    assert data["passes"] == row["passes"] == 3  # the default
    assert set(row["engines"]) == {"original", "onnx-fp32", "quantized"}
    assert row["engines"]["original"]["speedup"] == pytest.approx(1.0)
    for figures in row["engines"].values():
        assert figures["latency_s"] > 0 and figures["encoder_ms_per_window"] > 0
        assert figures["ms_per_step"] > 0 and figures["disk_mib"] > 0
        for key in ("latency_s", "speedup", "encoder_ms_per_window", "ms_per_step"):
            low, high = figures[f"{key}_range"]
            assert low <= figures[key] <= high, key
    low, high = row["engines"]["quantized"]["latency_s_range"]
    assert low < high  # three separate runs do not time alike to the nanosecond
    assert row["build_s"] > 0
    markdown = (tmp_path / "scaling.md").read_text()
    assert "8 forced tokens per window" in markdown and markdown.count("| quantized |") == 1
    assert "median of 3 passes" in markdown
    latency = row["engines"]["quantized"]["latency_s"]
    assert f"| {latency * 1000:,.0f} ({low * 1000:,.0f}-{high * 1000:,.0f}) |" in markdown
    assert (tmp_path / "scaling.png").stat().st_size > 0


def test_scaling_script_refuses_fewer_than_three_passes(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(root / "scripts" / "scaling.py"), str(tmp_path), "--clip", "x.wav"]
        + ["--passes", "2"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "--passes must be at least 3" in done.stderr
