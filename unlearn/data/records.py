"""A team's own training records: read with Hugging Face `datasets`, mapped to one canonical table.

Teams keep records as JSONL, CSV, Parquet or `datasets.save_to_disk` folders, with their own column
names. `read_table` reads any of them; `normalise` maps the columns named by a `FieldMap` onto the
canonical columns below, hashes subjects (salted HMAC: the raw identifier is never kept) and checks
every row; `save` writes the result as one records folder that families and methods read with `load`.

Canonical columns (absent ones are all None):
    sample_id     str, unique across train and holdout
    subject_hash  str | None   salted HMAC of the subject (`unlearn.identity.hash_subject`)
    split         "train" | "holdout"   holdout: never trained on (membership negatives, C3)
    label         int | None   class label (classifier, class-conditional diffusion)
    text          str | None   a training text (lm)
    question      str | None   optional question–answer pair (lm: MUSE's C2 and C4)
    answer        str | None
    prompt        str | None   caption or prompt (text-to-image diffusion)
    pixels        list[float] | None   an image, flattened, float32 in [0, 1]; shape in `records.json`

A records folder: `data/` (the Arrow table, `datasets.save_to_disk`) and `records.json`
(`{"columns": [...], "image_shape": [...] | null, "num_classes": int | null, "counts": {...},
"sha256": ...}`). Source: Hugging Face `datasets` (https://huggingface.co/docs/datasets).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from unlearn.contracts import SampleRecord
from unlearn.data.tabular import TabularDataset
from unlearn.identity import hash_subject

COLUMNS = ("sample_id", "subject_hash", "split", "label", "text", "question", "answer", "prompt", "pixels")
SPLITS = ("train", "holdout")
META = "records.json"
_FORMATS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".csv": "csv", ".parquet": "parquet"}


class RecordError(ValueError):
    """A records file that cannot be registered; the message names the file, the first bad row and why."""


@dataclass(frozen=True)
class FieldMap:
    """Which source column holds each canonical field (None: the records have no such column).

    `id` is required. `split` names a column of "train" / "holdout" values; without it every row of a
    file takes the split the caller gives `normalise`."""

    id: str = "id"
    subject: str | None = None
    split: str | None = None
    label: str | None = None
    text: str | None = None
    question: str | None = None
    answer: str | None = None
    prompt: str | None = None
    image: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def read_table(path: str | Path) -> Any:
    """A `datasets.Dataset` from a JSONL / JSON / CSV / Parquet file or a `save_to_disk` folder.

    Raises RecordError for a missing path or an unknown format."""
    import datasets

    datasets.disable_progress_bars()  # a service's log, not a terminal
    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path}: no such file or folder")
    try:
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = datasets.concatenate_datasets(list(ds.values()))
            return ds
        fmt = _FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise RecordError(f"{path}: unknown records format {path.suffix!r}; use .jsonl, .csv, .parquet "
                              "or a datasets save_to_disk folder")
        # A private cache: the shared one under ~/.cache would outlive the import and hold raw subjects.
        import tempfile

        with tempfile.TemporaryDirectory(prefix="unlearn-records-") as cache:
            ds = datasets.load_dataset(fmt, data_files=str(path), split="train", cache_dir=cache,
                                       keep_in_memory=True)
        return ds
    except RecordError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader error becomes one line naming the file
        raise RecordError(f"{path}: cannot read records: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def table_from_bytes(data: bytes, fmt: str, source: str = "records") -> Any:
    """A `datasets.Dataset` from an uploaded body: `fmt` "ndjson" (one JSON object a line, UTF-8) or
    "parquet". NDJSON is parsed line by line with Python's own `json` (a body from the network never
    reaches a native JSON parser); Parquet must carry its magic bytes at both ends before pyarrow reads it.
    Raises RecordError naming `source` and the first bad line."""
    import datasets

    if fmt == "ndjson":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(f"{source}: not UTF-8 (byte {exc.start})") from None
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise RecordError(f"{source}: line {n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise RecordError(f"{source}: line {n}: a JSON object is expected, not {type(row).__name__}")
            rows.append(row)
        if not rows:
            raise RecordError(f"{source}: no records")
        try:
            return datasets.Dataset.from_list(rows)
        except Exception as exc:  # noqa: BLE001 - columns whose values arrow cannot hold in one type
            raise RecordError(f"{source}: the records' columns do not hold one type each "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if fmt == "parquet":
        if len(data) < 12 or data[:4] != b"PAR1" or data[-4:] != b"PAR1":
            raise RecordError(f"{source}: not a Parquet file")
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return datasets.Dataset(pq.read_table(pa.BufferReader(data)))
        except Exception as exc:  # noqa: BLE001 - any reader fault is the refusal's reason
            raise RecordError(f"{source}: cannot read Parquet ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
    raise RecordError(f"{source}: unknown format {fmt!r}; ndjson or parquet")


def _bad_text(value: str) -> str | None:
    if "\x00" in value:
        return "contains NUL"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate"
    return None


def _pixels(value: Any, base: Path | None) -> np.ndarray:
    """An image from a path (relative to the records file), PNG/JPEG bytes, a PIL image, a
    `datasets.Image` dict or a nested array; float32 in [0, 1], shape (C, H, W)."""
    from PIL import Image

    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        value = value.get("bytes") or value.get("path")
    if isinstance(value, str):
        p = Path(value)
        value = Image.open(p if p.is_absolute() or base is None else base / p)
    elif isinstance(value, bytes | bytearray):
        value = Image.open(io.BytesIO(value))
    if isinstance(value, Image.Image):
        arr = np.asarray(value.convert("L") if value.mode in ("L", "1", "P", "I", "F") else value.convert("RGB"),
                         dtype=np.float32)
        arr = arr / 255.0 if arr.max(initial=0) > 1 else arr
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 1:
        side = math.isqrt(arr.size)
        if side * side != arr.size:
            raise ValueError(f"a flat image of {arr.size} values is not square")
        arr = arr.reshape(side, side)
    return arr[None] if arr.ndim == 2 else arr


def normalise(ds: Any, fields: FieldMap, *, salt: str, split: str = "train", source: str = "records",
              base_dir: Path | None = None, num_classes: int | None = None) -> tuple[list[dict], tuple | None]:
    """The canonical rows of `ds` and the common image shape (or None).

    Raises RecordError naming `source`, the first bad row (0-based) and its reason: a missing column,
    an empty or duplicate id, an empty text, a label that is not an integer in [0, num_classes), a
    split other than train / holdout, NUL or a lone surrogate in a string, an unreadable image or
    one whose shape differs from the first."""
    present = set(ds.column_names)
    mapping = {k: v for k, v in fields.to_dict().items() if v is not None}
    for canon, col in mapping.items():
        if col not in present:
            raise RecordError(f"{source}: no column {col!r} (mapped to {canon}); columns: {', '.join(sorted(present))}")
    rows: list[dict] = []
    seen: set[str] = set()
    shape: tuple | None = None
    for i, raw in enumerate(ds):
        def bad(reason: str, _i: int = i) -> RecordError:
            return RecordError(f"{source}: row {_i}: {reason}")

        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        sid = raw[fields.id]
        if sid is None or str(sid).strip() == "":
            raise bad(f"empty id ({fields.id})")
        sid = str(sid)
        if (why := _bad_text(sid)) or len(sid) > 128:
            raise bad(f"id {why or 'longer than 128 characters'}")
        if sid in seen:
            raise bad(f"duplicate id {sid!r}")
        seen.add(sid)
        row["sample_id"] = sid
        if fields.subject is not None and raw[fields.subject] not in (None, ""):
            subj = str(raw[fields.subject])
            if why := _bad_text(subj):
                raise bad(f"subject {why}")
            row["subject_hash"] = hash_subject(subj, salt)
        sp = str(raw[fields.split]) if fields.split is not None and raw[fields.split] is not None else split
        if sp not in SPLITS:
            raise bad(f"split {sp!r} is not one of {', '.join(SPLITS)}")
        row["split"] = sp
        if fields.label is not None:
            lbl = raw[fields.label]
            if isinstance(lbl, bool) or not isinstance(lbl, int | np.integer) and not (
                    isinstance(lbl, float) and lbl.is_integer()):
                raise bad(f"label {lbl!r} is not an integer")
            lbl = int(lbl)
            if lbl < 0 or (num_classes is not None and lbl >= num_classes):
                raise bad(f"label {lbl} is out of range [0, {num_classes if num_classes is not None else '…'})")
            row["label"] = lbl
        for canon in ("text", "question", "answer", "prompt"):
            col = mapping.get(canon)
            if col is None:
                continue
            value = raw[col]
            if value is None or (canon in ("text", "prompt") and str(value).strip() == ""):
                if canon in ("text", "prompt"):
                    raise bad(f"empty {canon} ({col})")
                continue
            value = str(value)
            if why := _bad_text(value):
                raise bad(f"{canon} {why}")
            row[canon] = value
        if fields.image is not None:
            try:
                img = _pixels(raw[fields.image], base_dir)
            except Exception as exc:  # noqa: BLE001 - any decoding fault names the row
                raise bad(f"unreadable image ({exc})") from None
            if shape is None:
                shape = tuple(img.shape)
            elif tuple(img.shape) != shape:
                raise bad(f"image shape {tuple(img.shape)} differs from the first row's {shape}")
            row["pixels"] = img.reshape(-1).tolist()
        rows.append(row)
    if not rows:
        raise RecordError(f"{source}: no records")
    return rows, shape


def check_disjoint(train: Iterable[dict], holdout: Iterable[dict], source: str = "holdout") -> None:
    """Raise RecordError when a holdout id is also a train id (the holdout must never have been trained on)."""
    train_ids = {r["sample_id"] for r in train}
    for i, r in enumerate(holdout):
        if r["sample_id"] in train_ids:
            raise RecordError(f"{source}: row {i}: id {r['sample_id']!r} is also a training record")


def content_sha256(rows: Sequence[dict], image_shape: tuple | None) -> str:
    """One hash over the canonical rows in order: the same records give the same hash whatever file held them."""
    h = hashlib.sha256(json.dumps(list(image_shape) if image_shape else None).encode())
    for r in rows:
        h.update(json.dumps([r[c] for c in COLUMNS], separators=(",", ":")).encode())
        h.update(b"\n")
    return h.hexdigest()


def save(rows: Sequence[dict], folder: Path, *, image_shape: tuple | None = None,
         num_classes: int | None = None) -> dict[str, Any]:
    """Write a records folder (`data/` and `records.json`); returns the metadata written."""
    import datasets

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    columns = [c for c in COLUMNS if any(r[c] is not None for r in rows)]
    table = datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in columns})
    table.save_to_disk(str(folder / "data"))
    labels = [r["label"] for r in rows if r["label"] is not None]
    meta = {"columns": columns, "image_shape": list(image_shape) if image_shape else None,
            "num_classes": num_classes if num_classes is not None else (max(labels) + 1 if labels else None),
            "counts": {sp: sum(r["split"] == sp for r in rows) for sp in SPLITS},
            "subjects": len({r["subject_hash"] for r in rows if r["subject_hash"]}),
            "sha256": content_sha256(rows, image_shape)}
    (folder / META).write_text(json.dumps(meta, indent=2))
    return meta


class Records:
    """A records folder as families and methods read it. Rows are addressed by sample id."""

    def __init__(self, folder: str | Path) -> None:
        import datasets

        self.folder = Path(folder)
        self.meta: dict[str, Any] = json.loads((self.folder / META).read_text())
        self.table = datasets.load_from_disk(str(self.folder / "data"))
        self.ids: list[str] = list(self.table["sample_id"])
        self.index = {s: i for i, s in enumerate(self.ids)}
        self.split: list[str] = list(self.table["split"])

    def has(self, column: str) -> bool:
        return column in self.meta["columns"]

    def column(self, name: str, ids: Sequence[str] | None = None) -> list[Any]:
        """The values of one canonical column for `ids` (all rows when None); None where absent."""
        if not self.has(name):
            return [None] * (len(self.ids) if ids is None else len(ids))
        values = self.table[name]
        return list(values) if ids is None else [values[self.row(s)] for s in ids]

    def row(self, sample_id: str) -> int:
        try:
            return self.index[sample_id]
        except KeyError:
            raise KeyError(f"sample {sample_id!r} is not in the records") from None

    def ids_in(self, split: str) -> list[str]:
        return [s for s, sp in zip(self.ids, self.split, strict=True) if sp == split]

    def records(self) -> list[SampleRecord]:
        """Every record as the registry stores it (subjects already hashed)."""
        subjects = self.column("subject_hash")
        labels = self.column("label")
        return [SampleRecord(s, subject_hash=h, label=lbl, split=sp)
                for s, h, lbl, sp in zip(self.ids, subjects, labels, self.split, strict=True)]

    def pixels(self, ids: Sequence[str] | None = None) -> np.ndarray:
        """Images as (N, C, H, W) float32 in [0, 1]. Raises ValueError when the records hold none."""
        if not self.has("pixels"):
            raise ValueError(f"{self.folder}: the records hold no images")
        flat = np.asarray(self.column("pixels", ids), dtype=np.float32)
        return flat.reshape(len(flat), *self.meta["image_shape"])


def load_tabular(path: str) -> TabularDataset:
    """A records folder as the classifier family's `TabularDataset` (the data set spec
    `{"name": "records", "path": …}`): X the flattened images, y the labels, subjects their hashes.
    The holdout serves as the membership negatives and as the test set (a team's records have no third
    split). Raises ValueError when the records hold no images or no labels."""
    rec = load(str(path))
    if not rec.has("label"):
        raise ValueError(f"{path}: the records hold no labels; a classifier needs them")
    X = rec.pixels()
    y = np.asarray(rec.column("label"), dtype=np.int64)
    return TabularDataset(ids=list(rec.ids), X=X.reshape(len(X), -1), y=y,
                          subjects=[h or "" for h in rec.column("subject_hash")], split=np.asarray(rec.split, dtype=object),
                          num_classes=int(rec.meta["num_classes"] or int(y.max()) + 1),
                          image_shape=tuple(rec.meta["image_shape"]), extra={"name": "records", "path": str(path)})


@lru_cache(maxsize=8)
def load(folder: str) -> Records:
    """The records folder at `folder`, read once per process (folders are written once, never changed)."""
    return Records(folder)


__all__ = ["COLUMNS", "FieldMap", "RecordError", "Records", "check_disjoint", "content_sha256", "load",
           "load_tabular", "normalise", "read_table", "save", "table_from_bytes"]


SCOPE_COLUMNS = ("sample_id", "subject")


def scope_list_from_bytes(data: bytes, fmt: str, source: str = "upload") -> tuple[str, list[str]]:
    """The list of an uploaded deletion scope: ("sample_id" | "subject", values). `fmt` "ndjson" (one JSON
    object a line, each with the one key `sample_id` or `subject`, the same key on every line; parsed with
    Python's `json`) or "parquet" (a string column of either name). Values are 1 to 128 characters, with no
    NUL or lone surrogate. Raises RecordError naming the first bad line or row. Source: pyarrow for Parquet."""
    if fmt == "ndjson":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(f"{source}: not UTF-8 (byte {exc.start})") from None
        column, values = None, []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise RecordError(f"{source}: line {n}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or len(row) != 1 or next(iter(row)) not in SCOPE_COLUMNS:
                raise RecordError(f"{source}: line {n}: an object with one key, sample_id or subject, is expected")
            key, value = next(iter(row.items()))
            if column not in (None, key):
                raise RecordError(f"{source}: line {n}: {key} after {column}: one upload lists one kind")
            column = key
            values.append(_scope_value(value, f"{source}: line {n}"))
    elif fmt == "parquet":
        if len(data) < 12 or data[:4] != b"PAR1" or data[-4:] != b"PAR1":
            raise RecordError(f"{source}: not a Parquet file")
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(pa.BufferReader(data))
        except Exception as exc:  # noqa: BLE001 - any reader fault is the refusal's reason
            raise RecordError(f"{source}: cannot read Parquet ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
        names = [c for c in SCOPE_COLUMNS if c in table.column_names]
        if len(names) != 1:
            raise RecordError(f"{source}: one column named sample_id or subject is expected, found "
                              f"{', '.join(table.column_names) or 'none'}")
        column = names[0]
        values = [_scope_value(v, f"{source}: row {n}") for n, v in enumerate(table.column(column).to_pylist(), 1)]
    else:
        raise RecordError(f"{source}: unknown format {fmt!r}; ndjson or parquet")
    if not values:
        raise RecordError(f"{source}: the list is empty")
    return column, values


def _scope_value(value: Any, where: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise RecordError(f"{where}: a string of 1 to 128 characters is expected")
    if (bad := _bad_text(value)) is not None:
        raise RecordError(f"{where}: {bad}")
    return value
