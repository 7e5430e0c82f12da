"""`ExtractOptions`: the extraction options as one object, checked when made, and how
`featstore.extract` takes them (keywords, an object, or both)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MODEL, Dataset, Models, fast_runtime, run_extract

from featstore.errors import InputError
from featstore.extraction.detection import DetectorSettings
from featstore.extraction.extractor import RuntimeOptions
from featstore.extraction.options import ExtractOptions
from featstore.extraction.pipeline import extract
from featstore.extraction.ray_engine import RayOptions


def test_defaults_and_models_kept_once_in_order() -> None:
    options = ExtractOptions(models=["b", "a", "b"])
    assert options.models == ("b", "a")
    assert ExtractOptions(models="arcface").models == ("arcface",)  # one name, not letters
    assert ExtractOptions().detector == DetectorSettings()
    assert ExtractOptions().runtime == RuntimeOptions()


def test_none_means_the_default_settings() -> None:
    # The Dataset and older scripts pass None for "the defaults".
    options = ExtractOptions(detector=None, runtime=None)  # type: ignore[arg-type]
    assert options.detector == DetectorSettings() and options.runtime == RuntimeOptions()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"models": []}, "no --model given"),
        ({"engine": "spark"}, "--engine 'spark': choose one of local, ray"),
        ({"ray_options": RayOptions(address="auto")}, "need --engine ray"),
        ({"shard": (2, 2)}, "--shard 2/2: the index must be 0 to 1"),
        ({"shard": (0, 0)}, "the shard count must be a whole number >= 1"),
    ],
)
def test_a_bad_option_fails_when_made(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        ExtractOptions(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "--batch-size must be at least 1, got 0"),
        ({"commit_identities": 0}, "--commit-every must be at least 1, got 0"),
    ],
)
def test_runtime_options_check_themselves(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InputError, match=message):
        RuntimeOptions(**kwargs)  # type: ignore[arg-type]


def test_ray_options_with_the_ray_engine_are_fine() -> None:
    options = ExtractOptions(engine="ray", ray_options=RayOptions(address="auto"))
    assert options.ray_options == RayOptions(address="auto")


def test_overwrite_with_shard_is_refused_before_the_store_is_touched(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    with pytest.raises(InputError, match="--overwrite cannot be combined with --shard"):
        run_extract(mini_dataset, store, models, overwrite=True, shard=(0, 2))
    assert not store.exists()


def test_an_unknown_keyword_is_a_type_error_naming_it(
    mini_dataset: Dataset, tmp_path: Path
) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'modle'"):
        extract(mini_dataset.face_dir, mini_dataset.video_dir, tmp_path / "s", modle=MODEL)
    assert not (tmp_path / "s").exists()


def test_keywords_replace_the_fields_of_an_options_object(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    options = ExtractOptions(
        models=[MODEL],
        weights={MODEL: models.weights},
        detector=models.detector(),
        runtime=fast_runtime(),
        limit=1,
    )
    store = tmp_path / "store"
    summary = extract(
        mini_dataset.face_dir, mini_dataset.video_dir, store, options=options, dry_run=True
    )
    assert summary.dry_run and summary.limit == 1  # the keyword and the object's own field
    assert summary.identities_in_input == 1 and summary.models == (MODEL,)
    assert not store.exists()  # a dry run writes nothing
