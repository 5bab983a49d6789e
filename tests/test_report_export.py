"""Per-sample export of results (``ResultMixin.to_columns / to_csv / to_parquet / to_frame``) and of a report."""

import csv
import dataclasses
import json
import math

import numpy as np
import pytest

from art_geometry import deepfool_margins, populated_region_set
from art_geometry.core.results import columns_of
from art_geometry.report.export import export_samples, result_tables
from tests.helpers import random_linear


@pytest.fixture(scope="module")
def margins():
    model = random_linear(3, (4,), seed=0)
    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    return model, x, deepfool_margins(model, x)


def test_columns_are_the_per_sample_fields(margins):
    _, _, res = margins
    cols = res.to_columns()
    assert list(cols) == ["margins", "success", "iterations", "predictions", "labels", "correct"]
    assert all(len(v) == 7 for v in cols.values())
    np.testing.assert_array_equal(cols["margins"], res.margins)
    assert cols["success"].dtype == bool and cols["predictions"].dtype == res.predictions.dtype


def test_two_dimensional_fields_become_one_column_per_row_or_column():
    res = {"a": [[1, 2, 3], [4, 5, 6]], "b": [[1, 2], [3, 4], [5, 6]], "img": [[[0]] * 3] * 3, "names": ["x", "y"],
           "methods": ["m", "n", "o"], "dtypes": {"a": "int64", "b": "float32", "img": "int64"},
           "summary": {"n_samples": 3}}
    cols = columns_of(res)
    assert list(cols) == ["a_0", "a_1", "b_0", "b_1", "methods"]
    np.testing.assert_array_equal(cols["a_1"], [4, 5, 6])
    np.testing.assert_array_equal(cols["b_0"], np.array([1, 3, 5], dtype=np.float32))
    with pytest.raises(ValueError, match="to_dict"):
        columns_of({"margins": [1.0]})


def test_csv_reads_back_exactly_with_infinities(margins, tmp_path):
    _, _, found = margins
    failed = np.zeros(7, dtype=bool)
    failed[[1, 4]] = True
    res = dataclasses.replace(found, margins=np.where(failed, np.inf, found.margins), success=~failed)
    path = res.to_csv(tmp_path / "sub" / "m.csv")
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 7
    back = np.array([float(r["margins"]) for r in rows])
    np.testing.assert_array_equal(back, res.margins.astype(np.float64))
    assert [r["success"] for r in rows] == [str(bool(s)) for s in res.success]
    assert rows[1]["margins"] == "inf" and np.isinf(back[[1, 4]]).all()


def test_parquet_and_frame(margins, tmp_path):
    pd = pytest.importorskip("pandas", reason="to_frame needs pandas (the 'export' extra)")
    pytest.importorskip("pyarrow", reason="Parquet export needs pyarrow (the 'export' extra)")
    _, _, res = margins
    frame = res.to_frame()
    assert frame.shape == (7, 6)
    back = pd.read_parquet(res.to_parquet(tmp_path / "m.parquet"))
    pd.testing.assert_frame_equal(back, frame)
    csv_back = pd.read_csv(res.to_csv(tmp_path / "m.csv"))
    np.testing.assert_array_equal(csv_back["margins"].to_numpy(), res.margins.astype(np.float64))


def test_report_export_walks_every_result(tmp_path, digits):
    from tests.test_report import digits_mlp

    model = digits_mlp().eval()
    prs = populated_region_set(model, digits.x_test[:30])
    data = {"m": {"prs": json.loads(json.dumps(prs.to_dict())), "note": {"n": 3}}}
    tables = dict(result_tables(data))
    assert list(tables) == [("m", "prs")]
    assert "counts" not in tables[("m", "prs")] or prs.n_regions == 30  # counts has one entry per region
    report = {"sections": {"regions": {"data": data}}}
    (entry,) = export_samples(report, tmp_path)
    assert entry["csv"] == "samples/regions/m/prs.csv" and entry["rows"] == 30
    with (tmp_path / entry["csv"]).open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["region_ids"]) for r in rows] == prs.region_ids.tolist()
    assert all(not math.isnan(float(r["predictions"])) for r in rows)
