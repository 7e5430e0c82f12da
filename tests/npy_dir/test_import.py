"""import-npy (SPEC §9): a directory into a store; import -> export gives the same files;
bad directories refused with file, field, expected and actual, the store untouched."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import Models
from featstore_cli.main import main
from npy_trees import edge_tree, extract_arcface

from featstore.errors import InputError
from featstore.extraction.pose import HeadPose, solve_pose_sqpnp
from featstore.npy_dir.export import export_npy
from featstore.npy_dir.import_ import import_npy
from featstore.npy_dir.layout import FILE_NAMES
from featstore.store.store import Store


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Path:
    root = tmp_path_factory.mktemp("npy_import")
    store = extract_arcface(edge_tree(root / "tree"), root / "store", models)
    export_npy(store, out=root / "dir")
    return root / "dir"


def _bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILE_NAMES}


def test_import_then_export_gives_the_same_files(exported: Path, tmp_path: Path) -> None:
    summary = import_npy(exported, store=tmp_path / "store")
    assert summary.model == "arcface_buffalo_l"
    assert summary.rows == {"front": 6, "video": 14} and summary.failed == {"front": 1, "video": 4}
    export_npy(tmp_path / "store", out=tmp_path / "again")
    assert _bytes(tmp_path / "again") == _bytes(exported)


def test_the_stable_pose_is_solved_from_the_keypoints_and_size(
    exported: Path, tmp_path: Path
) -> None:
    """featstore-pose-sqpnp-v1 (docs/pose.md) for every kept row, as extraction solves it."""
    import_npy(exported, store=tmp_path / "store")
    store = Store(tmp_path / "store")
    assert store.model("arcface_buffalo_l").provenance["sqpnp_pose_definition"] == (
        "featstore-pose-sqpnp-v1"
    )
    rows = store.sql(
        "SELECT landmarks_2d, width, height, sqpnp_euler_angles FROM images WHERE status = 'ok'"
    ).to_pylist()
    assert len(rows) == 20
    for row in rows:
        pose = solve_pose_sqpnp(np.array(row["landmarks_2d"], np.float32), *_size(row))
        assert isinstance(pose, HeadPose)
        assert row["sqpnp_euler_angles"] == pose.euler_angles.astype(np.float32).tolist()


def _size(row: dict[str, int]) -> tuple[int, int]:
    return row["width"], row["height"]


def test_empty_video_originals_are_solved_again(exported: Path, tmp_path: Path) -> None:
    """A fresh seed-script directory: video landmarks_3d_original is []."""
    seedlike = tmp_path / "seedlike"
    shutil.copytree(exported, seedlike)
    meta_path = seedlike / "video_metadata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["landmarks_3d_original"] = []
    meta_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    import_npy(seedlike, store=tmp_path / "store")
    export_npy(tmp_path / "store", out=tmp_path / "again")
    assert _bytes(tmp_path / "again") == _bytes(exported)  # the real values, filled
    rows = Store(tmp_path / "store").sql(
        "SELECT count(*) AS n FROM frames WHERE rotation_matrix IS NOT NULL"
    )
    assert rows.column("n")[0].as_py() == 14


def _rewrite_json(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = json.loads((folder / name).read_text(encoding="utf-8"))
        change(data)
        (folder / name).write_text(json.dumps(data, indent=2), encoding="utf-8")

    return damage


def _save(
    name: str, make: Callable[[np.ndarray], np.ndarray], **kw: object
) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        array = np.load(folder / name)
        np.save(folder / name, make(array), **kw)  # type: ignore[arg-type]

    return damage


def _huge_header(folder: Path) -> None:
    path = folder / "video_feature.npy"
    data = path.read_bytes()
    rows = json.loads((folder / "video_metadata.json").read_text())["num_samples"]
    old = f"'shape': ({rows}, 512)".encode()
    new = b"'shape': (1000000000000, 512)"
    header_end = data.index(b"\n") + 1
    header = data[:header_end].replace(old, new)
    header = header[: len(header) - 1 - (len(new) - len(old))] + b"\n"  # keep the length
    path.write_bytes(header + data[header_end:])


def _non_utf8(folder: Path) -> None:
    path = folder / "front_metadata.json"
    path.write_bytes(path.read_bytes().replace(b'"Anne"', b'"Ann\xff"', 1))


BAD = {
    "missing file": (
        lambda f: (f / "video_keypoints.npy").unlink(),
        r"video_keypoints\.npy: file: expected present",
    ),
    "extra file": (
        lambda f: (f / "notes.txt").write_text("x"),
        r"notes\.txt: file: expected one of the eight files",
    ),
    "wrong dtype": (
        _save("front_feature.npy", lambda a: a.astype(np.float64)),
        r"front_feature\.npy: dtype: expected float32, actual float64",
    ),
    "wrong shape": (
        _save("video_keypoints.npy", lambda a: a[:, :4]),
        r"video_keypoints\.npy: shape: expected \[N, 5, 3\], actual \[14, 4, 3\]",
    ),
    "objects": (
        _save("front_feature.npy", lambda a: np.array([object()] * len(a)), allow_pickle=True),
        r"front_feature\.npy: dtype: expected a number .*actual object",
    ),
    "10^12 rows": (
        _huge_header,
        r"video_feature\.npy: shape: expected a shape the file holds .*\[1000000000000, 512\]",
    ),
    "count": (
        _rewrite_json("front_metadata.json", lambda d: d.update(num_samples=5)),
        r"front_metadata\.json: num_samples: expected 6 .*actual 5",
    ),
    "list length": (
        _rewrite_json("video_metadata.json", lambda d: d["poses"].pop()),
        r"video_metadata\.json: poses: expected 14 rows .*actual 13 rows",
    ),
    "NaN": (
        _rewrite_json("video_metadata.json", lambda d: d["boxes"][3].__setitem__(0, float("nan"))),
        r"video_metadata\.json: boxes\[3\]: expected 4 finite numbers, actual nan",
    ),
    "non-UTF-8": (_non_utf8, r"front_metadata\.json: not UTF-8"),
    "frames twice": (
        _rewrite_json(
            "video_metadata.json", lambda d: d["metadata"].__setitem__(1, d["metadata"][0])
        ),
        r"again at 'video/Anne/f0\.jpg' \(the seed's rerun damage\)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_directories_are_refused_and_nothing_is_written(
    case: str, exported: Path, tmp_path: Path
) -> None:
    damage, message = BAD[case]
    folder = tmp_path / "dir"
    shutil.copytree(exported, folder)
    damage(folder)
    with pytest.raises(InputError, match=message):
        import_npy(folder, store=tmp_path / "store")
    assert not (tmp_path / "store").exists()


def test_cli_import_npy(exported: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["import-npy", str(exported), "--store", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "imported 6 front and 14 video rows" in result.output
    (tmp_path / "bad").mkdir()
    result = CliRunner().invoke(
        main, ["import-npy", str(tmp_path / "bad"), "--store", str(tmp_path / "t")]
    )
    assert result.exit_code == 1 and "front_feature.npy: file: expected present" in result.output
