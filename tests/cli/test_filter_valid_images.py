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
