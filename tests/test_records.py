"""Records read with `datasets` and mapped to the canonical table: hashing, validation, reading back."""

import json

import pytest

from unlearn.data import records as R
from unlearn.identity import hash_subject


def test_records_round_trip_hashes_subjects_and_names_the_first_bad_row(tmp_path):
    src = tmp_path / "t.jsonl"
    src.write_text("\n".join(json.dumps({"id": f"t{i}", "cust": f"c{i % 3}", "text": f"hello {i}", "lab": i % 2,
                                         "img": [[0, 1], [1, 0]]}) for i in range(6)))
    fields = R.FieldMap(id="id", subject="cust", text="text", label="lab", image="img")
    rows, shape = R.normalise(R.read_table(src), fields, salt="s", source=str(src), num_classes=2)
    assert shape == (1, 2, 2)
    meta = R.save(rows, tmp_path / "rec", image_shape=shape)
    rec = R.Records(tmp_path / "rec")
    assert rec.pixels(["t1"]).shape == (1, 1, 2, 2)
    first = rec.records()[0]
    assert first.subject is None and first.subject_hash == hash_subject("c0", "s")
    assert "c0" not in (tmp_path / "rec" / "records.json").read_text()
    assert meta["subjects"] == 3 and meta["counts"] == {"train": 6, "holdout": 0}

    src.write_text(src.read_text() + "\n" + json.dumps({"id": "t1", "text": "again"}))
    with pytest.raises(R.RecordError, match="row 6: duplicate id 't1'"):
        R.normalise(R.read_table(src), R.FieldMap(id="id", text="text"), salt="s", source=str(src))
    csv = tmp_path / "t.csv"
    csv.write_text("id,text\na,x\nb,\n")
    with pytest.raises(R.RecordError, match="row 1: empty text"):
        R.normalise(R.read_table(csv), R.FieldMap(id="id", text="text"), salt="s", source="t.csv")
    with pytest.raises(R.RecordError, match=r"row 1: label 1 is out of range \[0, 1\)"):
        R.normalise(R.read_table(src), R.FieldMap(id="id", label="lab"), salt="s", num_classes=1)


def test_records_read_as_a_classifier_data_set(tmp_path):
    src = tmp_path / "m.jsonl"
    src.write_text("\n".join(json.dumps({"sid": f"s{i}", "owner": f"o{i // 2}", "y": i % 3, "split": "holdout" if i > 7 else "train",
                                         "px": [i / 10] * 4}) for i in range(10)))
    rows, shape = R.normalise(R.read_table(src), R.FieldMap(id="sid", subject="owner", label="y", image="px", split="split"),
                              salt="s")
    R.save(rows, tmp_path / "rec", image_shape=shape, num_classes=3)
    from unlearn.data import get_dataset

    data = get_dataset({"name": "records", "path": str(tmp_path / "rec")})
    assert data.X.shape == (10, 4) and data.num_classes == 3 and data.image_shape == (1, 2, 2)
    assert data.ids_in("holdout") == ["s8", "s9"] and data.take(["s3"])[1].tolist() == [0]
