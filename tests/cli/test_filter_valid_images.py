"""`featstore filter-valid-images`: the seed script's command line, end to end."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from conftest import MODEL, Dataset, Models
from featstore_cli.main import main

from featstore.trainer_json.export import export_json

SEED_KEYS = [
    "face_image_path",
    "face_features",
    "face_landmarks_2d",
    "face_landmarks_3d",
    "face_box",
    "video_data",
]


def test_seed_flags_extract_then_export(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    out_dir = tmp_path / "train_transformer"
    out_dir.mkdir()
    output = out_dir / "valid_images.json"
    args = [
        "filter-valid-images",
        "--video_dir", str(mini_dataset.video_dir),
        "--face_dir", str(mini_dataset.face_dir),
        "--output_file", str(output),
        "--dinov2_model", MODEL,
        "--use_cpu",
        "--weights", str(models.weights),
        "--insightface_root", str(models.insightface_root),
        "--no-progress",
    ]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(output.read_text("utf-8"))
    assert sorted(data) == sorted(p.stem for p in mini_dataset.face_dir.iterdir())
    for entry in data.values():
        assert all(key in entry for key in SEED_KEYS)
        assert entry["dinov2_model"] == MODEL and entry["feature_dim"] == 384
        # The seed's default base dir is the output file's folder.
        assert (out_dir / entry["face_image_path"]).resolve() == (
            mini_dataset.face_dir / Path(entry["face_image_path"]).name
        ).resolve()
    store = out_dir / "valid_images.json.featstore"
    assert (store / "_featstore.json").is_file()

    again = export_json(store, out=tmp_path / "again.json", base_dir=out_dir)
    assert (tmp_path / "again.json").read_bytes() == output.read_bytes()
    assert again.identities == len(data)

    rerun = CliRunner().invoke(main, args)
    assert rerun.exit_code == 0, rerun.output
    assert "extracted 0 images" in rerun.output


def seed_args(dataset: Dataset, tmp_path: Path, *extra: str | Path) -> list[str]:
    return [
        "filter-valid-images",
        "--video_dir", str(dataset.video_dir),
        "--face_dir", str(dataset.face_dir),
        "--output_file", str(tmp_path / "valid_images.json"),
        "--dinov2_model", MODEL,
        "--use_cpu",
        "--no-progress",
        *map(str, extra),
    ]  # fmt: skip


def test_hints_name_this_commands_flags(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    """The library's hints, in the seed's spelling: no flag the command does not accept."""
    no_pack = CliRunner().invoke(
        main,
        seed_args(
            mini_dataset,
            tmp_path,
            *("--weights", models.weights, "--insightface_root", tmp_path / "nowhere"),
        ),
    )
    assert no_pack.exit_code == 1
    assert "--insightface_root DIR --pack NAME" in no_pack.output
    assert "--insightface-root" not in no_pack.output
    no_weights = CliRunner().invoke(main, seed_args(mini_dataset, tmp_path))  # empty hub cache
    assert no_weights.exit_code == 1
    assert "(CLI: --weights PATH)" in no_weights.output
    assert f"--weights {MODEL}=PATH" not in no_weights.output


def test_featstore_settings_in_the_seed_spelling(
    mini_dataset: Dataset, models: Models, tmp_path: Path
) -> None:
    args = seed_args(
        mini_dataset,
        tmp_path,
        "--weights", models.weights,
        "--insightface_root", models.insightface_root,
        "--pack", "buffalo_l",
        "--batch_size", "2",
        "--workers", "0",
        "--precision", "bf16",
    )  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    info = CliRunner().invoke(
        main, ["info", "--store", str(tmp_path / "valid_images.json.featstore")]
    )
    assert "precision bf16" in info.output
    for flag in ("--batch_size", "--precision", "--workers", "--pack"):
        assert flag in CliRunner().invoke(main, ["filter-valid-images", "--help"]).output
