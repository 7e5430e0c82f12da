"""`featstore validate`: every problem class of the seed's Q1-Q3, bad files, the CLI."""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from featstore_cli.validate_command import validate

from featstore.trainer_json.validate import Problem, ValidationReport, validate_json

DIM = 384
MODEL = "dinov2_vits14"
Data = dict[str, Any]


def _vector(n: int, seed: int) -> list[float]:
    return [round(((seed * 7919 + i * 104729) % 2001 - 1000) / 1000, 3) for i in range(n)]


def _matrix(rows: int, cols: int, seed: int) -> list[list[float]]:
    return [_vector(cols, seed + r) for r in range(rows)]


def make_identity(
    root: Path, name: str, *, dim: int = DIM, model: str = MODEL, frames: int = 2
) -> Data:
    """A clean new-format identity whose image files exist under `root`."""
    (root / "face").mkdir(exist_ok=True)
    (root / "video" / name).mkdir(parents=True, exist_ok=True)
    (root / "face" / f"{name}.jpg").write_bytes(b"")
    video_data = []
    for i in range(frames):
        (root / "video" / name / f"{i:03d}.jpg").write_bytes(b"")
        video_data.append(
            {
                "image_path": f"video/{name}/{i:03d}.jpg",
                "features": _vector(dim, i),
                "landmarks_2d": _matrix(5, 2, i),
                "landmarks_3d": _matrix(5, 3, i),
                "box": _vector(4, i),
                "spherical_angles": _vector(5, i),
                "avg_angle": 1.25,
            }
        )
    return {
        "face_image_path": f"face/{name}.jpg",
        "face_features": _vector(dim, 99),
        "face_landmarks_2d": _matrix(5, 2, 99),
        "face_landmarks_3d": _matrix(5, 3, 99),
        "face_box": [10.0, 20.0, 110.0, 140.0],
        "video_data": video_data,
        "total_video_images": frames + 1,
        "valid_video_images": frames,
        "feature_dim": dim,
        "dinov2_model": model,
    }


def make_old_identity(root: Path, name: str, frames: int = 2) -> Data:
    new = make_identity(root, name, frames=frames)
    return {
        "face_image_path": new["face_image_path"],
        "video_images": [frame["image_path"] for frame in new["video_data"]],
    }


def write_json(path: Path, data: Any) -> Path:
    # json.dumps writes NaN / Infinity tokens for non-finite floats, as the seed's script did.
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture()
def clean(tmp_path: Path) -> Data:
    """Two clean identities; an awkward name ('007' stays a string)."""
    return {name: make_identity(tmp_path, name) for name in ("007", "张三")}


def only(report: ValidationReport) -> Problem:
    assert report.problem_count == 1, [p.format() for p in report.problems]
    return report.problems[0]


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(validate, [str(a) for a in args])


# -- clean files -------------------------------------------------------------------------


def test_clean_new_file_passes(tmp_path: Path, clean: Data) -> None:
    path = write_json(tmp_path / "valid_images.json", clean)
    report = validate_json(path)
    assert report.ok and report.problems == []
    assert (report.format, report.identities, report.frames) == ("new", 2, 4)
    assert (report.dim, report.model) == (DIM, MODEL)
    result = invoke(path)
    assert result.exit_code == 0, result.output
    assert result.output == f"OK: {path}: new format, 2 identities, 4 frames, dim 384\n"


def test_clean_old_file_passes(tmp_path: Path) -> None:
    data = {name: make_old_identity(tmp_path, name) for name in ("a", "b")}
    report = validate_json(write_json(tmp_path / "old.json", data))
    assert report.ok, [p.format() for p in report.problems]
    assert (report.format, report.identities, report.frames, report.dim) == ("old", 2, 4, None)


def test_absolute_paths_are_used_as_they_are(tmp_path: Path, clean: Data) -> None:
    clean["007"]["face_image_path"] = str(tmp_path / "face" / "007.jpg")
    (tmp_path / "sub").mkdir()
    clean = {"007": clean["007"]}
    clean["007"]["video_data"][0]["image_path"] = str(tmp_path / "video" / "007" / "000.jpg")
    clean["007"]["video_data"][1]["image_path"] = "../video/007/001.jpg"
    assert validate_json(write_json(tmp_path / "sub" / "x.json", clean)).ok


# -- one problem each --------------------------------------------------------------------


def _locate(data: Data, path: str) -> tuple[Any, Any]:
    """The list or object holding identity 007's field at a dotted path, and the key."""
    *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
    target: Any = data["007"]
    for key in parents:
        target = target[key]
    return target, last


def _set(path: str, value: Any) -> Callable[[Data], None]:
    def mutate(data: Data) -> None:
        target, key = _locate(data, path)
        target[key] = value

    return mutate


def _delete(path: str) -> Callable[[Data], None]:
    def mutate(data: Data) -> None:
        target, key = _locate(data, path)
        del target[key]

    return mutate


CASES = {
    # name: (mutation, code, field, expected contains, found contains)
    "Q1 model dim": (
        _set("dinov2_model", "dinov2_vitb14"),
        "Q1-dim-mismatch",
        "dinov2_model",
        "a model of 384-dim features (dinov2_vits14, dinov2_vits14_reg)",
        "dinov2_vitb14 (768-dim)",
    ),
    "Q1 feature_dim": (
        _set("feature_dim", 768),
        "Q1-dim-mismatch",
        "feature_dim",
        "384 (the length of every feature vector)",
        "768",
    ),
    "Q1 one vector": (
        _set("video_data.1.features", _vector(383, 0)),
        "Q1-dim-mismatch",
        "video_data[1].features",
        "384 numbers (feature_dim)",
        "383 numbers",
    ),
    "Q1 unknown model": (
        _set("dinov2_model", "clip_vitb16"),
        "Q1-unknown-model",
        "dinov2_model",
        "one of dinov2_vits14,",
        '"clip_vitb16"',
    ),
    "missing video_data": (
        _delete("video_data"),
        "Q3-missing-field",
        "video_data",
        "a field 'video_data'",
        "no such field",
    ),
    "missing face_features": (
        _delete("face_features"),
        "Q3-missing-field",
        "face_features",
        "a field 'face_features'",
        "no such field",
    ),
    "missing dinov2_model": (
        _delete("dinov2_model"),
        "Q3-missing-field",
        "dinov2_model",
        "a field 'dinov2_model'",
        "no such field",
    ),
    "frame field missing": (
        _delete("video_data.1.box"),
        "Q3-missing-field",
        "video_data[1].box",
        "a field 'box'",
        "no such field",
    ),
    "landmarks rows": (
        _set("face_landmarks_2d", _matrix(4, 2, 0)),
        "Q3-shape",
        "face_landmarks_2d",
        "[5][2] finite numbers",
        "an array of 4",
    ),
    "landmarks row length": (
        _set("video_data.0.landmarks_3d.1", [1.0, 2.0]),
        "Q3-shape",
        "video_data[0].landmarks_3d",
        "[5][3] finite numbers",
        "an array of 2 at [1]",
    ),
    "box length": (
        _set("face_box", [1.0, 2.0, 3.0]),
        "Q3-shape",
        "face_box",
        "[4] finite numbers",
        "an array of 3",
    ),
    "string in angles": (
        _set("video_data.1.spherical_angles.2", "12.5"),
        "Q3-type",
        "video_data[1].spherical_angles",
        "[5] finite numbers",
        '"12.5" at [2]',
    ),
    "bool in features": (
        _set("face_features.0", True),
        "Q3-type",
        "face_features",
        "an array of finite numbers",
        "true at [0]",
    ),
    "avg_angle null": (
        _set("video_data.0.avg_angle", None),
        "Q3-type",
        "video_data[0].avg_angle",
        "a finite number",
        "null",
    ),
    "features not a list": (
        _set("face_features", "0.1 0.2"),
        "Q3-type",
        "face_features",
        "an array of finite numbers",
        '"0.1 0.2"',
    ),
    "frame not an object": (
        _set("video_data.1", "video/007/001.jpg"),
        "Q3-type",
        "video_data[1]",
        "an object",
        '"video/007/001.jpg"',
    ),
    "NaN feature": (
        _set("video_data.1.features.5", float("nan")),
        "Q3-non-finite",
        "video_data[1].features",
        "an array of finite numbers",
        "NaN at [5]",
    ),
    "Infinity in box": (
        _set("face_box.2", float("-inf")),
        "Q3-non-finite",
        "face_box",
        "[4] finite numbers",
        "-Infinity at [2]",
    ),
    "NaN landmark": (
        _set("face_landmarks_3d.4.2", float("nan")),
        "Q3-non-finite",
        "face_landmarks_3d",
        "[5][3] finite numbers",
        "NaN at [4][2]",
    ),
    "feature_dim a string": (
        _set("feature_dim", "384"),
        "Q3-type",
        "feature_dim",
        "an integer > 0",
        '"384"',
    ),
    "valid count": (
        _set("valid_video_images", 5),
        "Q3-count",
        "valid_video_images",
        "2 (the length of video_data)",
        "5",
    ),
    "total count": (
        _set("total_video_images", 1),
        "Q3-count",
        "total_video_images",
        "at least 2 (the length of video_data)",
        "1",
    ),
    "count a float": (
        _set("total_video_images", 3.0),
        "Q3-type",
        "total_video_images",
        "an integer >= 0",
        "3.0",
    ),
    "backslash": (
        _set("face_image_path", "face\\007.jpg"),
        "Q2-backslash",
        "face_image_path",
        "'/' separators",
        '"face\\\\007.jpg"',
    ),
    "missing file": (
        _set("video_data.1.image_path", "video/007/gone.jpg"),
        "Q2-missing-path",
        "video_data[1].image_path",
        "an existing file",
        "video/007/gone.jpg (no such file)",
    ),
    "path is a folder": (
        _set("face_image_path", "face"),
        "Q2-missing-path",
        "face_image_path",
        "an existing file",
        "(a folder)",
    ),
    "empty path": (
        _set("face_image_path", ""),
        "Q3-type",
        "face_image_path",
        "a non-empty path string",
        '""',
    ),
    "identity not an object": (
        lambda data: data.update({"007": [1, 2]}),
        "Q3-type",
        None,
        "an object",
        "an array of 2",
    ),
    "unknown format": (
        lambda data: data.update({"007": {"face_image_path": "face/007.jpg", "frames": []}}),
        "Q3-unknown-format",
        None,
        "face_features + video_data (new format) or video_images (old)",
        "fields face_image_path, frames",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_problem_names_identity_field_expected_found(
    tmp_path: Path, clean: Data, case: str
) -> None:
    mutate, code, field, expected, found = CASES[case]
    mutate(clean)
    path = write_json(tmp_path / "data.json", clean)
    report = validate_json(path)
    problem = only(report)
    assert (problem.code, problem.identity, problem.field) == (code, "007", field)
    assert expected in problem.expected
    assert found in problem.found
    result = invoke(path)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0] == problem.format()
    assert lines[0].startswith(f"007: {field}: " if field else "007: expected ")
    assert f"expected {problem.expected}, found {problem.found} [{code}]" in lines[0]
    assert lines[-1] == f"1 problem in {path} ({report.describe()})"
    assert f"Hint ({code[:2]}): " in result.output


def test_frame_problems_merge_per_identity(tmp_path: Path, clean: Data) -> None:
    for frame in clean["007"]["video_data"]:
        del frame["spherical_angles"]
    problem = only(validate_json(write_json(tmp_path / "data.json", clean)))
    assert problem.field == "video_data[*].spherical_angles"
    assert problem.found == "no such field in 2 of 2 frames, first video_data[0].spherical_angles"


def test_mixed_dims(tmp_path: Path, clean: Data) -> None:
    clean["李四"] = make_identity(tmp_path, "李四", dim=768, model="dinov2_vitb14")
    report = validate_json(write_json(tmp_path / "data.json", clean))
    problem = only(report)
    assert (problem.code, problem.identity, problem.field) == (
        "Q1-mixed-dims",
        "李四",
        "feature_dim",
    )
    assert (problem.expected, problem.found) == ("384, as identity 007", "768")
    assert report.dim == DIM


def test_mixed_models_of_one_dim(tmp_path: Path, clean: Data) -> None:
    clean["张三"]["dinov2_model"] = "dinov2_vits14_reg"
    problem = only(validate_json(write_json(tmp_path / "data.json", clean)))
    assert (problem.code, problem.identity) == ("Q1-mixed-models", "张三")
    assert (problem.expected, problem.found) == (
        "dinov2_vits14, as identity 007",
        "dinov2_vits14_reg",
    )


def test_mixed_formats(tmp_path: Path, clean: Data) -> None:
    clean["old"] = make_old_identity(tmp_path, "old")
    problem = only(validate_json(write_json(tmp_path / "data.json", clean)))
    assert (problem.code, problem.identity) == ("Q3-mixed-format", "old")
    assert (problem.expected, problem.found) == (
        "the new format, as identity 007",
        "the old format",
    )


@pytest.mark.parametrize("with_nan", [False, True], ids=["streamed", "parsed-whole"])
def test_duplicate_identity(tmp_path: Path, clean: Data, with_nan: bool) -> None:
    if with_nan:  # NaN makes the streaming parser give up: the whole-file path runs
        clean["张三"]["face_box"][0] = float("nan")
    text = json.dumps(clean, ensure_ascii=False)
    path = tmp_path / "dup.json"
    path.write_text(text[:-1] + ', "007": ' + json.dumps(clean["007"]) + "}", encoding="utf-8")
    report = validate_json(path)
    codes = sorted(p.code for p in report.problems)
    assert codes == (
        ["Q3-duplicate-identity", "Q3-non-finite"] if with_nan else ["Q3-duplicate-identity"]
    )
    assert report.identities == 2


def test_old_format_with_missing_files(tmp_path: Path) -> None:
    data = {name: make_old_identity(tmp_path, name, frames=3) for name in ("a", "b")}
    data["b"]["video_images"][1] = "video/b/nope.jpg"
    data["b"]["video_images"][2] = "video\\b\\002.jpg"
    report = validate_json(write_json(tmp_path / "old.json", data))
    assert [(p.code, p.identity, p.field) for p in report.problems] == [
        ("Q2-backslash", "b", "video_images[2]"),
        ("Q2-missing-path", "b", "video_images[1]"),  # after the identities: one per cause
    ]
    missing = report.problems[1].found
    assert missing == f'"video/b/nope.jpg" -> {tmp_path / "video/b/nope.jpg"} (no such file)'


def test_old_format_missing_video_images(tmp_path: Path) -> None:
    report = validate_json(write_json(tmp_path / "old.json", {"a": {"face_image_path": "x.jpg"}}))
    assert [p.code for p in report.problems] == ["Q3-unknown-format"]
    data = {
        "a": make_old_identity(tmp_path, "a"),
        "b": {"face_image_path": "face/a.jpg", "video_images": "x"},
    }
    problem = only(validate_json(write_json(tmp_path / "old.json", data)))
    assert (problem.code, problem.identity, problem.field) == ("Q3-type", "b", "video_images")


def test_paths_of_another_base_dir_are_one_warning(tmp_path: Path, clean: Data) -> None:
    # The seed's README: `--output_file train_transformer/valid_images.json --base_dir .`,
    # so the paths are relative to the folder above the file's.
    (tmp_path / "train_transformer").mkdir()
    path = write_json(tmp_path / "train_transformer" / "valid_images.json", clean)
    report = validate_json(path)
    assert report.ok and report.problems == []
    (warning,) = report.warnings
    assert (warning.code, warning.identity) == ("Q2-base-dir", None)
    assert warning.found.startswith(f"6 of 6 paths resolve against {tmp_path} instead")
    result = invoke(path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("warning: (file): expected paths relative")
    assert result.output.splitlines()[-1].endswith("(1 warning)")
    assert invoke(path, "--strict").exit_code == 1
    # Checked where they are: clean; against a wrong folder: one line per cause.
    assert invoke(path, "--base-dir", tmp_path).output.startswith("OK: ")
    assert validate_json(path, base_dir=tmp_path).warnings == []
    wrong = validate_json(path, base_dir=tmp_path / "train_transformer")
    assert wrong.counts_by_code == {"Q2-missing-path": 1, "Q2-base-dir": 1}
    assert "and 5 more such paths in 2 identities" in wrong.problems[0].found
    # The old format's images are opened by the trainer: they stay problems.
    old = {name: make_old_identity(tmp_path, name) for name in ("a", "b")}
    old_path = write_json(tmp_path / "train_transformer" / "old.json", old)
    assert validate_json(old_path).counts_by_code == {"Q2-missing-path": 1, "Q2-base-dir": 1}
    assert invoke(old_path).exit_code == 1
    assert validate_json(old_path, base_dir=tmp_path).ok


def test_paths_that_resolve_nowhere_stay_problems(tmp_path: Path, clean: Data) -> None:
    (tmp_path / "moved").mkdir()
    clean["007"]["face_image_path"] = "elsewhere/007.jpg"  # resolves against no folder
    path = write_json(tmp_path / "moved" / "data.json", clean)
    report = validate_json(path)
    assert report.counts_by_code == {"Q2-missing-path": 1, "Q2-base-dir": 1}
    assert report.warnings == []
    base = report.problems[-1]
    assert base.identity is None and base.found.startswith("none of 6 paths exists")
    assert validate_json(path, check_paths=False).ok


# -- files that are not JSON objects ---------------------------------------------------------


def test_truncated_file_reports_line_and_column(tmp_path: Path, clean: Data) -> None:
    text = json.dumps(clean, ensure_ascii=False, indent=1)
    cut = text[: text.index('"张三"') + 200]
    path = tmp_path / "cut.json"
    path.write_text(cut, encoding="utf-8")
    with pytest.raises(json.JSONDecodeError) as python:
        json.loads(cut)
    report = validate_json(path)
    problem = only(report)
    assert (problem.code, problem.identity) == ("Q3-json-syntax", None)
    last_line = cut.rsplit("\n", 1)[-1]
    where = f"at line {python.value.lineno}, column {len(last_line) + 1}"  # where it stops
    assert where in problem.found and "truncated?" in problem.found
    assert report.identities == 1  # the identity before the cut was checked
    result = invoke(path)
    assert result.exit_code == 1
    assert result.output.startswith("(file): expected valid JSON, found the file stops inside")


def test_trailing_garbage(tmp_path: Path, clean: Data) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(clean) + "\n}", encoding="utf-8")
    problem = only(validate_json(path))
    assert problem.code == "Q3-json-syntax"
    assert problem.found.startswith("text after the top-level object, near ")
    assert problem.found.endswith("at line 2, column 1")


@pytest.mark.parametrize("at_offset", [5, 70_000])
def test_not_utf8_reports_byte_offset(tmp_path: Path, clean: Data, at_offset: int) -> None:
    text = json.dumps(clean, ensure_ascii=False).encode()
    padding = b" " * (at_offset - 5) + "中".encode()  # a multi-byte character across a chunk edge
    data = b'{"jos\xe9": 1,' if at_offset == 5 else b'{"pad":"' + padding + b'\xe9", '
    data = data + text[1:]
    path = tmp_path / "latin1.json"
    path.write_bytes(data)
    problem = only(validate_json(path))
    offset = data.index(b"\xe9")
    assert (problem.code, problem.expected) == ("Q3-encoding", "UTF-8 text")
    assert problem.found == f"byte E9 at byte offset {offset} (line 1)"


@pytest.mark.parametrize(
    ("content", "code", "found"),
    [
        (b"", "Q3-empty", "an empty file"),
        (b" \n\t\n", "Q3-empty", "only whitespace"),
        (b'[{"face_image_path": "x"}]', "Q3-top-level", "an array of 1"),
        (b'"valid_images"', "Q3-top-level", '"valid_images"'),
        (b"NaN", "Q3-top-level", "NaN"),
        (b"<html>", "Q3-json-syntax", "Expecting value at line 1, column 1"),
        (codecs.BOM_UTF16_LE + '{"a": 1}'.encode("utf-16-le"), "Q3-encoding", "UTF-16 text (BOM)"),
        ('{"a": 1}'.encode("utf-16-le"), "Q3-encoding", "NUL bytes"),
    ],
    ids=["empty", "whitespace", "list", "string", "nan", "html", "utf16", "utf16-no-bom"],
)
def test_files_that_are_not_an_object(
    tmp_path: Path, content: bytes, code: str, found: str
) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(content)
    problem = only(validate_json(path))
    assert (problem.code, problem.identity, problem.field) == (code, None, None)
    assert found in problem.found
    result = invoke(path)
    assert result.exit_code == 1
    assert (
        result.output.splitlines()[-1]
        == f"1 problem in {path} (unknown format, 0 identities, 0 frames)"
    )


def test_utf8_bom_is_reported_and_the_rest_checked(tmp_path: Path, clean: Data) -> None:
    clean["007"]["feature_dim"] = 768
    path = tmp_path / "bom.json"
    path.write_bytes(codecs.BOM_UTF8 + json.dumps(clean).encode())
    report = validate_json(path)
    assert [p.code for p in report.problems] == ["Q3-encoding", "Q1-dim-mismatch"]
    assert report.identities == 2


def test_overflowing_number_is_non_finite(tmp_path: Path, clean: Data) -> None:
    path = tmp_path / "x.json"
    text = json.dumps(clean).replace('"avg_angle": 1.25', '"avg_angle": 1e999', 1)
    path.write_text(text, encoding="utf-8")
    problem = only(validate_json(path))
    assert (problem.code, problem.field, problem.found) == (
        "Q3-non-finite",
        "video_data[0].avg_angle",
        "Infinity",
    )


# -- limits and the command line ------------------------------------------------------------


def test_max_problems_keeps_the_first_and_counts_all(tmp_path: Path) -> None:
    data = {f"id{i}": {"face_image_path": f"gone{i}.jpg", "video_images": []} for i in range(30)}
    path = write_json(tmp_path / "x.json", data)
    report = validate_json(path, check_paths=False, max_problems=5)
    assert (len(report.problems), report.problem_count) == (5, 30)
    assert report.to_dict()["problems_truncated"] is True
    result = invoke(path, "--no-check-paths", "--max-problems", "5")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[5] == "... and 25 more (--max-problems 0 lists all)"
    assert lines[-1].startswith("30 problems in ")
    assert len(invoke(path, "--no-check-paths", "--max-problems", "0").output.splitlines()) == 32
    with pytest.raises(ValueError, match="max_problems must be None or >= 0, got -1"):
        validate_json(path, max_problems=-1)


def test_json_output(tmp_path: Path, clean: Data) -> None:
    path = write_json(tmp_path / "ok.json", clean)
    result = invoke(path, "--json")
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["ok"] is True and report["problems"] == [] and report["format"] == "new"
    clean["007"]["dinov2_model"] = "dinov2_vitb14"
    del clean["张三"]["video_data"]
    write_json(path, clean)
    result = invoke(path, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False and report["problem_count"] == 2
    assert report["counts_by_code"] == {"Q1-dim-mismatch": 1, "Q3-missing-field": 1}
    assert set(report["hints"]) == {"Q1", "Q3"}
    assert report["problems"][1] == {
        "code": "Q3-missing-field",
        "identity": "张三",
        "field": "video_data",
        "expected": "a field 'video_data'",
        "found": "no such field",
        "message": "",
    }


def test_identity_names_are_quoted_when_ambiguous() -> None:
    problem = Problem("Q3-type", "a: b", "face_box", "x", "y")
    assert problem.format() == '"a: b": face_box: expected x, found y [Q3-type]'
    assert (
        Problem("Q3-type", "张三", None, "x", "y").format() == "张三: expected x, found y [Q3-type]"
    )


def test_cli_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke(tmp_path / "nope.json")
    assert result.exit_code == 2
    assert "does not exist" in result.output
