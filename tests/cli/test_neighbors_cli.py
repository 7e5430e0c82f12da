"""`featstore neighbors` and `featstore info` on a store with planted duplicates."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result
from conftest import ARCFACE, COPIED_FRAME, COPIED_IDENTITY, MODEL, Extracted, copy_store
from featstore_cli.main import main


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_neighbors_then_rerun_then_info(neighbors_store: Path, tmp_path: Path) -> None:
    store = copy_store(neighbors_store, tmp_path / "store")
    first = invoke("neighbors", "--store", store, "--threshold", "0.9999")
    assert first.exit_code == 0, first.output
    assert f"model {ARCFACE} (version" in first.output
    assert "identity face: exact (flat inner product)" in first.output
    lines = first.output.splitlines()
    pairs = lines.index(next(line for line in lines if line.startswith("suspected same")))
    assert "1 pairs" in lines[pairs] and f"person_001 ~ {COPIED_IDENTITY}" in lines[pairs + 1]
    assert COPIED_FRAME in first.output
    again = invoke("neighbors", "--store", store, "--threshold", "0.9999")
    assert again.exit_code == 0 and "up to date" in again.output
    info = invoke("info", "--store", store)
    assert "neighbors: table version 0, from model table version" in info.output
    assert "(up to date); K 5, threshold 0.9999" in info.output


def test_bad_inputs_are_clean_errors(neighbors_store: Path, extracted: Extracted) -> None:
    result = invoke("neighbors", "--store", extracted.store)
    assert result.exit_code == 1 and "has no ArcFace model" in result.output
    assert "--model arcface" in result.output and "Traceback" not in result.output
    result = invoke("neighbors", "--store", neighbors_store, "--threshold", "-1.5")
    assert result.exit_code == 1 and "a cosine lies in [-1, 1]" in result.output
    result = invoke("neighbors", "--store", neighbors_store, "--k", "99")
    assert result.exit_code == 1 and "--k 99" in result.output and "--k 5 or less" in result.output
    result = invoke("neighbors", "--store", neighbors_store, "--exact-limit", "-1")
    assert result.exit_code == 1 and "--exact-limit -1: must be a whole number" in result.output


def test_exact_limit_chooses_the_search(neighbors_store: Path, tmp_path: Path) -> None:
    store = copy_store(neighbors_store, tmp_path / "store")
    result = invoke("neighbors", "--store", store, "--exact-limit", "4")
    assert result.exit_code == 0, result.output
    assert "identity face: " in result.output and "IVF" in result.output, result.output
    assert "recall" in result.output and "nprobe" in result.output
    # Another limit is another setting: recomputed (and exact again at the default).
    again = invoke("neighbors", "--store", store)
    assert again.exit_code == 0 and "written in" in again.output, again.output
    assert "IVF" not in again.output and "exact (flat inner product)" in again.output


def test_a_dinov2_model_is_searched_with_a_warning(neighbors_store: Path, tmp_path: Path) -> None:
    store = copy_store(neighbors_store, tmp_path / "store")
    result = CliRunner().invoke(main, ["neighbors", "--store", str(store), "--model", MODEL])
    assert result.exit_code == 0, result.output
    assert "warning: model dinov2_vits14 is not an ArcFace model" in result.output
    assert "not the same person under two names" in result.output
