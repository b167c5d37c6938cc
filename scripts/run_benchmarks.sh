#!/usr/bin/env bash
# The README's benchmark runs, one after another, each writing docs/benchmark-<set>-<model>.*
# Run on a quiet machine: every figure is wall-clock time on this machine's cores.
#   bash scripts/run_benchmarks.sh [models dir] [set ...]
#   (sets: tuning eval long sequential batched batched-no-timestamps mixed recipes languages
#    recipes-languages)
# eval/ holds five languages (en es fr it ru). tiny.en is English-only: it runs on --languages en.
# RECIPES_PER_LANGUAGE=N (default all) runs the recipes set on base with the first N clips of
# each of its languages in metadata order. LANGUAGES_PER_LANGUAGE=N (default all: every clip
# of the five languages) does the same for the languages set, and
# RECIPES_LANGUAGES_PER_LANGUAGE=N (default 25) for the recipes-languages set.
# Each figure is a wall-clock time: NICE (default -15, which needs root) raises the runs' priority
# over anything else on the machine; NICE=0 runs at normal priority.
set -euo pipefail
cd "$(dirname "$0")/.."
models=${1:-models}
shift || true
# The default sets write every table of docs/results.md; the recipes set holds the evaluation
# table's engines (original, pytorch, onnx-fp32, quantized) on the same clips, so `eval` (those
# four alone) is not among them.
sets=${*:-tuning long sequential batched batched-no-timestamps mixed recipes languages recipes-languages}
recipes_per_language=${RECIPES_PER_LANGUAGE:-all}
if [ "$recipes_per_language" = all ]; then
    recipes_subset=()
else
    recipes_subset=(--limit-per-language "$recipes_per_language")
fi
# RECIPES_LANGUAGES (default en: the committed tables) names the languages of the recipes set
# on base; RECIPES_LANGUAGES=en,es,fr,it,ru RECIPES_PER_LANGUAGE=40 gives every recipe's
# per-language columns (about 41 minutes here).
recipes_languages=${RECIPES_LANGUAGES:-en}
languages_per_language=${LANGUAGES_PER_LANGUAGE:-all}
recipes_languages_per_language=${RECIPES_LANGUAGES_PER_LANGUAGE:-25}
if [ "$languages_per_language" = all ]; then
    languages_subset=()
else
    languages_subset=(--limit-per-language "$languages_per_language")
fi
nice_level=${NICE:--15}
long=$(mktemp -d)
trap 'rm -rf "$long"' EXIT

run() {  # run <set> <model> <benchmark.py arguments...>
    local set=$1 model=$2
    shift 2
    nice -n "$nice_level" python benchmark.py "$@" --models-dir "$models" --model "$model" \
        --json "docs/benchmark-$set-$model.json" --markdown "docs/benchmark-$set-$model.md" \
        --plot "docs/benchmark-$set-$model.png" || [ $? -eq 1 ]  # 1: a clip failed, reported
}

for model in tiny.en base; do
    python build_model.py --model "$model" --output-dir "$models" --recipes all
done
for set in $sets; do
    case $set in
    tuning)  # the six shipped clips the recipe was tuned on; five timed passes
        for model in tiny.en base; do
            run tuning "$model" tests/data/*.wav --references tests/data/refs.tsv \
                --engines original,pytorch,onnx-fp32,quantized,faster-whisper --repeat 3
        done ;;
    eval)  # the evaluation set's English clips (eval/), never used for tuning; one timed pass
           # (base on every language is the languages set)
        for model in tiny.en base; do
            run eval "$model" --dataset eval --languages en \
                --engines original,pytorch,onnx-fp32,quantized --repeat 1
        done ;;
    long)  # 1, 3 and 10 minutes of real speech, and English then German; one timed pass
        python scripts/long_clips.py "$long"
        run long tiny.en "$long"/english-*.flac --references "$long/refs.tsv" \
            --engines original,pytorch,onnx-fp32,quantized --repeat 1
        # base: the 1-minute clip (its longer runs take longer than this script should)
        run long base "$long"/english-1min.flac --references "$long/refs.tsv" \
            --engines original,pytorch,onnx-fp32,quantized --repeat 1 ;;
    sequential)  # the long set's tiny.en clips, sequential windows, under their own name: the
                 # batched sets' baseline from the same session; one timed pass
        python scripts/long_clips.py "$long"
        run sequential tiny.en "$long"/english-*.flac --references "$long/refs.tsv" \
            --engines original,pytorch,onnx-fp32,quantized --repeat 1 ;;
    batched)  # the long set's tiny.en clips cut at pauses (Silero VAD) into chunks of at most
              # 30 s, decoded 8 at a time by every engine; faster-whisper runs its
              # BatchedInferencePipeline with the same batch size and threads. One timed pass.
              # Compare with docs/benchmark-sequential-tiny.en.* (the sequential set, run in
              # the same session).
        python scripts/long_clips.py "$long"
        run batched tiny.en "$long"/english-*.flac --references "$long/refs.tsv" \
            --engines original,pytorch,onnx-fp32,quantized,faster-whisper --repeat 1 \
            --batch-size 8 ;;
    batched-no-timestamps)  # the same without timestamps: one segment per chunk, as
                            # faster-whisper's batched pipeline does by default
        python scripts/long_clips.py "$long"
        run batched-no-timestamps tiny.en "$long"/english-*.flac --references "$long/refs.tsv" \
            --engines original,pytorch,onnx-fp32,quantized,faster-whisper --repeat 1 \
            --batch-size 8 --no-timestamps ;;
    mixed)  # English then German on base, language per window, every recipe; one timed pass
        python scripts/long_clips.py "$long"
        run mixed base "$long/english-then-german.flac" --references "$long/refs.tsv" \
            --engines original,onnx-fp32,int8-seed,quantized,int8-encoder,int8-decoder,int4-weights,int8-static \
            --repeat 1 --language-per-window ;;
    recipes)  # every recipe and runtime on the evaluation set (int8-static is calibrated on
              # the tuning clips, so it is judged on clips it never saw); one timed pass.
              # tiny.en: the English clips; base: every language, RECIPES_PER_LANGUAGE clips each
        run recipes tiny.en --dataset eval --languages en --repeat 1 \
            --tradeoff-plot docs/benchmark-recipes-tiny.en-tradeoff.png
        run recipes base --dataset eval --languages "$recipes_languages" \
            ${recipes_subset[@]+"${recipes_subset[@]}"} --repeat 1 \
            --tradeoff-plot docs/benchmark-recipes-base-tradeoff.png ;;
    languages)  # base on every clip of all five languages: per-language accuracy, language
                # identification and dropped speech; one timed pass. pytorch (the original's
                # weights through the shared loop) is left out: it is a speed baseline, and
                # the recipes and tuning sets time it.
        run languages base --dataset eval --languages en,es,fr,it,ru \
            ${languages_subset[@]+"${languages_subset[@]}"} \
            --engines original,onnx-fp32,quantized --repeat 1 ;;
    recipes-languages)  # every recipe and runtime on base's four other languages,
                        # RECIPES_LANGUAGES_PER_LANGUAGE clips each (the recipes set holds
                        # English on every clip); one timed pass
        run recipes-languages base --dataset eval --languages es,fr,it,ru \
            --limit-per-language "$recipes_languages_per_language" --repeat 1 ;;
    *) echo "unknown set: $set" >&2; exit 2 ;;
    esac
done
