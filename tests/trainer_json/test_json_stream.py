"""The trainer JSON read identity by identity: one set of rules for validate, import-json and
FeatureDataset, positions of malformed text, and memory bounded by one identity."""

from __future__ import annotations

import contextlib
import io
import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from featstore import FeatureDataset
from featstore.errors import InputError
from featstore.trainer_json import json_stream
from featstore.trainer_json.importer import import_json
from featstore.trainer_json.json_stream import JsonTextError, read_members
from featstore.trainer_json.validate import validate_json

DIM = 384
MODEL = "dinov2_vits14"


def entry(frames: int = 2, value: float = 0.25) -> dict[str, Any]:
    return {
        "face_image_path": "face/a.jpg",
        "face_features": [value] * DIM,
        "face_landmarks_2d": [[1.0, 2.0]] * 5,
        "face_landmarks_3d": [[1.0, 2.0, 3.0]] * 5,
        "face_box": [1.0, 2.0, 3.0, 4.0],
        "video_data": [
            {
                "image_path": f"video/a/{i}.jpg",
                "features": [value] * DIM,
                "landmarks_2d": [[1.0, 2.0]] * 5,
                "landmarks_3d": [[1.0, 2.0, 3.0]] * 5,
                "box": [1.0, 2.0, 3.0, 4.0],
                "spherical_angles": [0.5] * 5,
                "avg_angle": 0.5,
            }
            for i in range(frames)
        ],
        "total_video_images": frames,
        "valid_video_images": frames,
        "feature_dim": DIM,
        "dinov2_model": MODEL,
    }


def text_of(entries: list[tuple[str, str]]) -> bytes:
    """A file from (key as written in JSON, value as written)."""
    return ("{" + ", ".join(f"{key}: {value}" for key, value in entries) + "}").encode()


GOOD = json.dumps(entry())
NUMBER = GOOD.replace('"face_features": [0.25', '"face_features": [@', 1)


def number(text: str) -> str:
    """GOOD with its first face feature written as `text`."""
    return NUMBER.replace("@", text, 1)


# name -> (file content, what validate reports, what import-json and FeatureDataset say)
HOSTILE: dict[str, tuple[bytes, str, str]] = {
    "lone high surrogate key": (
        text_of([('"\\ud800"', GOOD), ('"b"', GOOD)]),
        "Q3-identity-name",
        "expected valid Unicode (a lone surrogate is not)",
    ),
    "lone low surrogate key (json.dump of a non-UTF-8 name)": (
        text_of([('"\\udce9"', GOOD)]),
        "Q3-identity-name",
        "expected valid Unicode (a lone surrogate is not)",
    ),
    "beyond float32": (
        text_of([('"a"', number("3.5e38"))]),
        "Q3-non-finite",
        "face_features: expected numbers within float32's range, found 3.5e+38",
    ),
    "string as a number": (
        text_of([('"a"', number('"0.5"'))]),
        "Q3-type",
        "face_features[0]: expected a number, found the string '0.5'",
    ),
    "true as a number": (
        text_of([('"a"', number("true"))]),
        "Q3-type",
        "face_features[0]: expected a number, found true",
    ),
    "repeated identity": (
        text_of([('"a"', GOOD), ('"a"', GOOD)]),
        "Q3-duplicate-identity",
        "expected each identity once, found it again at line 1",
    ),
    "empty identity": (
        text_of([('""', GOOD)]),
        "Q3-identity-name",
        "expected a non-empty identity, found an empty string",
    ),
    "integer beyond float64 (1 and 400 zeros)": (
        text_of([('"a"', number("1" + "0" * 400))]),
        "Q3-non-finite",
        "face_features: expected numbers within float32's range, found inf",
    ),
    "NaN": (
        text_of([('"a"', number("NaN"))]),
        "Q3-non-finite",
        "face_features: expected numbers within float32's range, found nan (NaN or Infinity",
    ),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_one_set_of_rules_everywhere(tmp_path: Path, case: str) -> None:
    content, code, message = HOSTILE[case]
    path = tmp_path / "hostile.json"
    path.write_bytes(content)
    report = validate_json(path, check_paths=False)
    assert code in report.counts_by_code, [p.format() for p in report.problems]
    with pytest.raises(InputError, match="hostile.json") as imported:
        import_json(path, store=tmp_path / "store")
    assert message in str(imported.value)
    assert not (tmp_path / "store").exists()
    with pytest.raises(InputError, match="hostile.json") as read:
        FeatureDataset(path, cache_dir=tmp_path / "cache")
    assert message in str(read.value)
    assert str(read.value) == str(imported.value)  # the same reader, the same words


def test_good_file_reads_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "good.json"
    b, a = json.dumps(entry(2, 0.5)), json.dumps(entry(3, 0.75))
    path.write_bytes(text_of([('"b"', b), ('"a"', a)]))  # not in code point order
    assert validate_json(path, check_paths=False).ok
    assert import_json(path, store=tmp_path / "store").identities == 2
    dataset = FeatureDataset(path, cache_dir=tmp_path / "cache")
    assert dataset.identities == ["a", "b"] and len(dataset) == 5
    firsts = [float(dataset[i]["input_features"][0]) for i in range(5)]
    assert firsts == [0.75] * 3 + [0.5] * 2  # samples in identity order, then frame order
    assert [p.name for p in (tmp_path / "cache").iterdir() if ".tmp-" in p.name] == []


def members(data: bytes, chunk: int) -> list[tuple[str | None, Any]] | str:
    """The members as read with a given chunk size, or the error's text."""
    old = json_stream.CHUNK
    json_stream.CHUNK = chunk
    try:
        return [(m.name, m.value) for m in read_members(io.BytesIO(data))]
    except JsonTextError as exc:
        return f"{exc.kind}: {exc}"
    finally:
        json_stream.CHUNK = old


TRICKY = [
    b'  {"a": {"x": [1, 2, {"y": "}]\\\\"}]}, "b\\"}": [1], "c": 5, "d": "s{", "e": {}}  \n',
    b'{"x": {"k": "a\\\\\\\\"}, "y": {"k": "\\"{["}, "z": [[], {}]}',
    '{"张三": {"路径": "视频/1.jpg"}, "007": {"n": 7}}'.encode(),
    b"{}",
]


@pytest.mark.parametrize("data", TRICKY)
def test_spans_match_json_loads_at_any_chunk_size(data: bytes) -> None:
    expected = list(json.loads(data).items())
    for chunk in (1, 2, 3, 7, 1 << 17):
        assert members(data, chunk) == expected, chunk


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b'{"a": {"b": [1,\n  2', "truncated: the file stops inside the top-level object"),
        (b'{"a": {}, }', "syntax: a trailing comma before the closing '}'"),
        (b'{"a": {}}\n x', "syntax: text after the top-level object"),
        (b'{"a": {"b": [1,\n 2,]}}', "syntax: trailing comma is not allowed (in identity 'a')"),
        (b'{"a": {} "b": {}}', "syntax: expected a ',' before member"),
        (b"[1]", "top-level: expected '{' (an object keyed by identity), found '['"),
        (b'{"a": {"p": "\xff"}}', "encoding: bytes that are not UTF-8"),
    ],
)
def test_malformed_text_is_refused_with_its_position(data: bytes, found: str) -> None:
    results = {chunk: members(data, chunk) for chunk in (1, 3, 1 << 17)}
    assert len(set(map(str, results.values()))) == 1  # the same wherever the chunks end
    message = results[1 << 17]
    assert isinstance(message, str) and message.startswith(found), message
    assert " at line " in message and ", column " in message


def peak_bytes(run: Callable[[], object]) -> int:
    tracemalloc.start()
    with contextlib.suppress(InputError):
        run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_deep_nesting_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_bytes(b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    report = validate_json(path)
    assert report.counts_by_code == {"Q3-json-syntax": 1}
    assert "nested more than 1024 levels deep" in report.problems[0].found
    for run in (
        lambda: validate_json(path),
        lambda: import_json(path, store=tmp_path / "store"),
        lambda: FeatureDataset(path, cache_dir=tmp_path / "cache"),
    ):
        assert peak_bytes(run) < 10 * 2**20
    with pytest.raises(InputError, match="nested more than 1024 levels deep .* at line 1"):
        import_json(path, store=tmp_path / "store")


def test_one_nan_in_a_large_file_keeps_memory_flat(tmp_path: Path) -> None:
    def write(name: str, identities: int) -> Path:
        values = [
            (f'"p{i:05d}"', json.dumps(entry(frames=1, value=0.1 + i)))
            for i in range(1, identities)
        ]
        values.append(('"p00000"', number("NaN")))
        path = tmp_path / name
        path.write_bytes(text_of(values))
        return path

    small, large = write("small.json", 50), write("large.json", 1000)
    validate_json(small)  # lazy imports
    peaks = {p: peak_bytes(lambda p=p: validate_json(p, check_paths=False)) for p in (small, large)}
    assert validate_json(large, check_paths=False).counts_by_code == {"Q3-non-finite": 1}
    assert peaks[large] < 1.5 * peaks[small] + 4 * json_stream.CHUNK
    assert peaks[large] < large.stat().st_size / 3


def test_a_long_identity_key_costs_a_small_multiple_of_its_size(tmp_path: Path) -> None:
    """The scanner's key regex kept ~170 bytes per character (3.4 GB for a 20 MB key)."""
    key = "k" * (4 * 2**20)
    path = tmp_path / "long_key.json"
    path.write_bytes(text_of([(f'"{key}"', GOOD)]))
    for run in (
        lambda: list(read_members(io.BytesIO(path.read_bytes()))),
        lambda: validate_json(path, check_paths=False),
        lambda: import_json(path, store=tmp_path / "store"),
        lambda: FeatureDataset(path, cache_dir=tmp_path / "cache"),
    ):
        assert peak_bytes(run) < 12 * len(key)


def test_validate_is_linear_in_top_level_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """N scalar members on one line, then an identity: each member's position was counted
    from the line's start again (quadratic). Counted here: the bytes the scanner looks at
    for positions, never a timing."""
    scanned = [0]
    characters = json_stream._characters

    def counting(buf: bytearray, start: int, end: int) -> int:
        scanned[0] += max(min(end, len(buf)) - start, 0)
        return characters(buf, start, end)

    monkeypatch.setattr(json_stream, "_characters", counting)
    path = tmp_path / "scalars.json"
    path.write_bytes(text_of([(f'"s{i}"', str(i)) for i in range(20_000)] + [('"a"', GOOD)]))
    report = validate_json(path, check_paths=False)
    assert report.counts_by_code.get("Q3-type") or report.problems  # the scalars are refused
    assert scanned[0] < 4 * path.stat().st_size, scanned[0]
