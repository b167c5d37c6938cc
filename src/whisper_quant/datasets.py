"""Evaluation clips from a dataset: a local audiofolder, a local TSV, or a Hugging Face Hub id.

Every source becomes `DatasetClip` records: the benchmark's `bench.Clip` (name, 16 kHz float32
audio from the project's PyAV decoder, reference text), so any dataset runs through the same
benchmark and statistics as the clips in tests/data, plus the labels the dataset gives each
clip: its language, speaker and source (empty where the dataset has no such column).

- Audiofolder: a folder of audio files plus ``metadata.csv`` (or ``metadata.jsonl`` /
  ``metadata.parquet``) whose ``file_name`` column names each file relative to the metadata file,
  and a transcription column. A subfolder with a metadata file of its own is a separate dataset
  and is not read with its parent (eval/synthetic/ is not part of eval/).
- Labels: the first column present of LANGUAGE_COLUMNS, SPEAKER_COLUMNS and SOURCE_COLUMNS
  (any case); eval/metadata.csv has ``language``, ``speaker`` and ``source``.
- TSV: ``file<TAB>reference`` lines as in tests/data/refs.tsv (`bench.read_references`), files
  beside the TSV. A path to a metadata file reads its folder as an audiofolder.
- Hub id ("user/name"): read with ``streaming=True``, so nothing is downloaded in full; needs a
  network.

Audiofolders and Hub datasets are read with Hugging Face ``datasets`` (optional: ``pip install
datasets``). Its Audio feature decodes with torchcodec, which needs a system FFmpeg, so the audio
column is cast to ``Audio(decode=False)`` and read as Arrow: each value is the file's path or its
bytes, and `audio.decode_audio` decodes it. In the pinned datasets 5.0.1 (as in 4.4.1),
``Audio.encode_example`` imports torchcodec even for a plain path; the non-streaming builder and
streamed Python rows call it, streamed Arrow batches do not, so local folders are streamed too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .audio import DEFAULT_MAX_SECONDS, AudioError, decode_audio
from .bench import Clip, read_references
from .models import HUB_ID

logger = logging.getLogger(__name__)

# Transcription columns tried in this order when text_column is not given (case-insensitive).
TEXT_COLUMNS = ("transcription", "transcript", "text", "sentence", "normalized_text", "raw_text")
# Label columns, each tried in this order (case-insensitive); a label with no column is "".
LANGUAGE_COLUMNS = ("language", "lang", "locale")
SPEAKER_COLUMNS = ("speaker", "speaker_id", "client_id")
SOURCE_COLUMNS = ("source",)
# Metadata files an audiofolder may hold, as Hugging Face's audiofolder builder reads them.
METADATA_FILES = ("metadata.csv", "metadata.jsonl", "metadata.parquet")
# Splits tried, in this order, when a dataset has several and none is named.
PREFERRED_SPLITS = ("test", "validation", "train")
# Rows fetched per Arrow batch while streaming. One: a streamed audiofolder yields one Arrow
# table per row, typing an empty CSV cell as null, and datasets 5.0.1 cannot join a null-typed
# row to a string-typed one into a larger batch (ArrowInvalid: schema mismatch).
BATCH_SIZE = 1

INSTALL_HINT = "pip install datasets"


class DatasetSourceError(ValueError):
    """The source cannot be read as a dataset of clips (missing folder, column or split)."""


@dataclass(frozen=True)
class DatasetClip(Clip):
    """A clip of a dataset: a `bench.Clip` plus the dataset's labels for it.

    ``language`` is the code the dataset writes (eval/ uses Whisper's ISO 639-1 codes),
    ``speaker`` who reads the clip and ``source`` where it comes from; each is "" when the
    dataset has no such column.
    """

    language: str = ""
    speaker: str = ""
    source: str = ""


@dataclass(frozen=True)
class _Labels:
    """A clip's labels as read from its row ("" where the dataset has no such column)."""

    language: str = ""
    speaker: str = ""
    source: str = ""


@dataclass(frozen=True)
class _Row:
    """One example before decoding: where its audio is, its reference and its labels."""

    name: str
    path: str | None
    data: bytes | None
    reference: str | None
    labels: _Labels = _Labels()


def load_dataset_clips(
    source: str | os.PathLike[str],
    split: str | None = None,
    audio_column: str = "audio",
    text_column: str | None = None,
    limit: int | None = None,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    languages: Collection[str] | None = None,
    limit_per_language: int | None = None,
) -> list[DatasetClip]:
    """Clips from an audiofolder, a TSV file or a Hub dataset id, in the source's order.

    ``text_column`` None picks the first of TEXT_COLUMNS present; ``split`` None picks the only
    split, else the first of PREFERRED_SPLITS. ``languages`` keeps only the clips labelled with
    one of these languages (before ``limit`` counts them; a source without a language column
    is an error). ``limit_per_language`` keeps the first N clips of each language label, in
    the source's order (unlabelled clips count as one language ""). A clip whose audio cannot
    be decoded is kept with its ``error`` set, as `bench.load_clips` does.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be at least 0, got {limit}")
    if limit_per_language is not None and limit_per_language < 0:
        raise ValueError(f"limit_per_language must be at least 0, got {limit_per_language}")
    path = Path(source).expanduser()
    if path.is_file() and path.name in METADATA_FILES:
        path = path.parent
    if path.is_dir():
        rows = _audiofolder_rows(path, split, audio_column, text_column)
    elif path.is_file():
        rows = _tsv_rows(path)
    elif isinstance(source, str) and HUB_ID.match(source):
        rows = _hub_rows(source, split, audio_column, text_column)
    else:
        raise DatasetSourceError(
            f"{source}: no such folder or file, and not a Hugging Face dataset id (user/name)"
        )
    clips = []
    labelled = False
    per_language: dict[str, int] = {}
    for row in rows:
        if limit is not None and len(clips) >= limit:
            break
        labelled = labelled or bool(row.labels.language)
        if languages is not None and row.labels.language not in languages:
            continue
        taken = per_language.get(row.labels.language, 0)
        if limit_per_language is not None and taken >= limit_per_language:
            continue
        per_language[row.labels.language] = taken + 1
        clips.append(_decode(row, max_seconds))
    if languages is not None and not clips and not labelled:
        raise DatasetSourceError(
            f"{source}: no language column ({', '.join(LANGUAGE_COLUMNS)}) to pick "
            f"{', '.join(sorted(languages))} by"
        )
    return clips


def import_datasets() -> Any:
    """The `datasets` module, or an ImportError that says how to install it."""
    try:
        import datasets
    except ImportError as e:
        raise ImportError(
            f"Reading audiofolders and Hub datasets needs Hugging Face datasets: {INSTALL_HINT}"
        ) from e
    return datasets


def find_column(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    """The first of ``candidates`` among ``columns`` (any case), as ``columns`` spells it."""
    by_lower = {column.lower(): column for column in columns}
    return next((by_lower[c] for c in candidates if c in by_lower), None)


def find_text_column(columns: list[str], text_column: str | None = None) -> str:
    """The transcription column: ``text_column`` if present, else the first known name."""
    if text_column is not None:
        if text_column not in columns:
            raise DatasetSourceError(f"no column {text_column!r}; columns: {', '.join(columns)}")
        return text_column
    found = find_column(columns, TEXT_COLUMNS)
    if found is not None:
        return found
    raise DatasetSourceError(
        f"no transcription column among {', '.join(columns)}; expected one of "
        f"{', '.join(TEXT_COLUMNS)} or text_column=..."
    )


def _tsv_rows(path: Path) -> Iterator[_Row]:
    for name, reference in read_references(path).items():
        yield _Row(name=name, path=str(path.parent / name), data=None, reference=reference)


def _audiofolder_rows(
    folder: Path, split: str | None, audio_column: str, text_column: str | None
) -> Iterator[_Row]:
    if any((folder / name).is_file() for name in METADATA_FILES):
        # Hugging Face reads every metadata file under data_dir into one dataset; a subfolder
        # with its own metadata is kept apart here (eval/synthetic/ is not eval/'s real speech).
        options = {"data_files": {"train": [str(path) for path in _own_files(folder)]}}
    elif any(path.name in METADATA_FILES for path in folder.rglob("*")):
        # Metadata only in subfolders: split folders such as train/ and test/.
        options = {"data_dir": str(folder)}
    else:
        raise DatasetSourceError(
            f"{folder}: no {' / '.join(METADATA_FILES)} with file names and transcriptions"
        )
    loaded = import_datasets().load_dataset("audiofolder", streaming=True, **options)
    dataset, split_name = _pick_split(loaded, split, str(folder))
    return _dataset_rows(dataset, split_name, audio_column, text_column, root=folder.resolve())


def _own_files(folder: Path) -> list[Path]:
    """The files under `folder`, leaving out subfolders that hold a metadata file of their own."""
    paths = sorted(path for path in folder.rglob("*") if path.is_file())
    nested = {path.parent for path in paths if path.name in METADATA_FILES} - {folder}
    return [path for path in paths if nested.isdisjoint(path.parents)]


def _hub_rows(
    dataset_id: str, split: str | None, audio_column: str, text_column: str | None
) -> Iterator[_Row]:
    datasets = import_datasets()
    loaded = datasets.load_dataset(dataset_id, split=split, streaming=True)
    dataset, split_name = _pick_split(loaded, split, dataset_id)
    return _dataset_rows(dataset, split_name, audio_column, text_column, root=None)


def _pick_split(loaded: Any, split: str | None, source: str) -> tuple[Any, str]:
    """(dataset, split name) from what load_dataset returned (one split or a dict of them)."""
    if not hasattr(loaded, "keys"):
        return loaded, split or "data"
    names = list(loaded.keys())
    if split is not None:
        if split not in names:
            raise DatasetSourceError(f"{source}: no split {split!r}; splits: {', '.join(names)}")
        return loaded[split], split
    if len(names) == 1:
        return loaded[names[0]], names[0]
    for name in PREFERRED_SPLITS:
        if name in names:
            return loaded[name], name
    raise DatasetSourceError(f"{source}: choose a split: {', '.join(names)}")


def _dataset_rows(
    dataset: Any, split: str, audio_column: str, text_column: str | None, root: Path | None
) -> Iterator[_Row]:
    datasets = import_datasets()
    # Label field -> its column; labels without a column stay "".
    label_columns: dict[str, str] = {}
    if dataset.features is None:
        # Some streamed Hub datasets declare no features; their columns are known only by
        # reading rows, so the columns must be named (and no labels are read).
        if text_column is None:
            raise DatasetSourceError("the dataset declares no columns: pass text_column=...")
        text = text_column
    else:
        columns = list(dataset.features)
        if audio_column not in columns:
            raise DatasetSourceError(
                f"no audio column {audio_column!r}; columns: {', '.join(columns)}"
            )
        others = [c for c in columns if c != audio_column]
        text = find_text_column(others, text_column)
        for field, candidates in (
            ("language", LANGUAGE_COLUMNS),
            ("speaker", SPEAKER_COLUMNS),
            ("source", SOURCE_COLUMNS),
        ):
            found = find_column([c for c in others if c != text], candidates)
            if found is not None:
                label_columns[field] = found
    selected = list(dict.fromkeys([audio_column, text, *label_columns.values()]))
    arrow = (
        dataset.select_columns(selected)
        .cast_column(audio_column, datasets.Audio(decode=False))
        .with_format("arrow")
    )
    index = 0
    for table in arrow.iter(batch_size=BATCH_SIZE):
        audios = table.column(audio_column).to_pylist()
        references = table.column(text).to_pylist()
        values = {field: table.column(c).to_pylist() for field, c in label_columns.items()}
        for row_index, (audio, reference) in enumerate(zip(audios, references, strict=True)):
            labels = _Labels(
                **{field: _label(column[row_index]) for field, column in values.items()}
            )
            yield _row_from_audio(audio, reference, f"{split}-{index:05d}", root, labels)
            index += 1


def _label(value: Any) -> str:
    """A label cell as text: numbers (LibriSpeech's speaker_id) become digits, None becomes ""."""
    return "" if value is None else str(value).strip()


def _row_from_audio(
    audio: Any, reference: str | None, fallback: str, root: Path | None, labels: _Labels
) -> _Row:
    """A row from an Audio(decode=False) value: {"path": ..., "bytes": ...}."""
    path = audio.get("path") if isinstance(audio, dict) else None
    data = audio.get("bytes") if isinstance(audio, dict) else None
    name = _clip_name(path, root) or fallback
    return _Row(name=name, path=path, data=data, reference=reference, labels=labels)


def _clip_name(path: str | None, root: Path | None) -> str | None:
    """The file's path inside the audiofolder, or the file name of a remote path."""
    if not path:
        return None
    if root is not None:
        try:
            return Path(path).resolve().relative_to(root).as_posix()
        except ValueError:
            pass
    # Remote paths may chain protocols ("zip://a.wav::hf://..."); the first part names the file.
    return path.split("::", 1)[0].rstrip("/").rsplit("/", 1)[-1] or None


def _decode(row: _Row, max_seconds: float | None) -> DatasetClip:
    clip_path = Path(row.path) if row.path else Path(row.name)
    labels = asdict(row.labels)
    try:
        audio = decode_audio(_audio_source(row), max_seconds=max_seconds)
    except (AudioError, OSError) as e:
        logger.warning("%s: %s", row.name, e)
        return DatasetClip(row.name, clip_path, row.reference, error=str(e), **labels)
    return DatasetClip(row.name, clip_path, row.reference, audio, **labels)


def _audio_source(row: _Row) -> str | bytes:
    if row.data:
        return row.data
    if row.path is None:
        raise AudioError("The example holds neither audio bytes nor a path")
    if "://" not in row.path:
        return row.path
    import fsspec  # a dependency of datasets; opens hf:// and chained zip:// paths

    with fsspec.open(row.path, "rb") as f:
        return f.read()
