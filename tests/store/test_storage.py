"""Stores on object storage: extract, query, info and export-json through pyarrow's real S3
client against moto's S3 server on loopback; URIs and secrets in messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import MODEL, Dataset, Extracted, Models, run_extract
from featstore_cli.main import main
from s3_server import S3, SECRET
from store_checks import assert_same_rows, extract_args, table_rows

from featstore.errors import StoreError
from featstore.store import Store
from featstore.store.location import resolve_store, scrub_uri
from featstore.store.query import count_rows, store_info
from featstore.trainer_json.export import export_json


def upload(store: Path, uri: str) -> None:
    """A local store copied to object storage as it is (its log names files relatively)."""
    import pyarrow.fs as pafs

    location = resolve_store(uri)
    pafs.copy_files(
        str(store),
        location.path(""),
        source_filesystem=pafs.LocalFileSystem(),
        destination_filesystem=location.fs,
    )


def test_scrub_uri_hides_user_info_and_secret_options() -> None:
    uri = f"s3://user:{SECRET}@bucket/p?secret_key={SECRET}&region=eu-west-1&session_token=abcd"
    scrubbed = scrub_uri(uri)
    assert SECRET not in scrubbed and "abcd" not in scrubbed
    assert scrubbed == "s3://bucket/p?secret_key=***&region=eu-west-1&session_token=***"


def test_local_paths_and_file_uris_are_local(tmp_path: Path) -> None:
    assert resolve_store(tmp_path).local == tmp_path
    assert resolve_store(f"file://{tmp_path}").local == tmp_path


def test_an_unknown_scheme_is_a_store_error() -> None:
    with pytest.raises(StoreError, match=r"cannot open --store nosuch://b/p\?password=\*\*\*"):
        resolve_store(f"nosuch://b/p?password={SECRET}")


@pytest.mark.slow
def test_extract_query_info_and_export_on_s3(
    tmp_path: Path, s3: S3, extracted: Extracted, models: Models
) -> None:
    """The awkward dataset (names with `%`, `=`, quotes, Chinese) extracted into S3."""
    uri = s3.uri("stores/awkward")
    summary = run_extract(extracted.dataset, uri, models)
    local = extracted.summary
    assert summary.store == uri
    assert summary.images_extracted == local.images_extracted
    assert summary.store_counts == local.store_counts
    assert_same_rows(table_rows(uri), table_rows(extracted.store))  # the same rows

    store = Store(uri)
    assert store.location.local is None
    assert [m.name for m in store.models()] == [MODEL]
    assert count_rows(store) == count_rows(Store(extracted.store))
    query = "SELECT identity, frame_index, status, features FROM images ORDER BY ALL"
    assert store.sql(query) == Store(extracted.store).sql(query)
    info = store_info(store)
    assert info.path == uri and info.disk_bytes > 0
    assert info.counts == store_info(Store(extracted.store)).counts

    ours, theirs = tmp_path / "s3.json", tmp_path / "local.json"
    exported = export_json(uri, out=ours, where="abs(avg_angle) < 80")
    export_json(extracted.store, out=theirs, where="abs(avg_angle) < 80")
    assert exported.identities > 0
    assert ours.read_bytes() == theirs.read_bytes()

    again = run_extract(extracted.dataset, uri, models)
    assert again.identities_extracted == 0 and again.images_extracted == 0


@pytest.mark.slow
def test_cli_on_s3_with_endpoint_in_the_uri(
    tmp_path: Path, s3: S3, mini_dataset: Dataset, models: Models, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint as URI options instead of AWS_ENDPOINT_URL; no secret in any output."""
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    uri = s3.uri(f"stores/cli?endpoint_override={s3.endpoint}&scheme=http")
    runner = CliRunner()
    extract = runner.invoke(main, extract_args(mini_dataset, uri, models))
    assert extract.exit_code == 0, extract.output
    assert f"store: {uri}" in extract.output
    local = run_extract(mini_dataset, tmp_path / "local", models)  # the same, on local disk
    info = runner.invoke(main, ["info", "--store", uri])
    assert info.exit_code == 0, info.output
    valid = local.store_counts[MODEL].valid_identities
    assert f"model {MODEL}: dim 384, " in info.output and f" {valid} valid" in info.output
    query = runner.invoke(
        main, ["query", "--store", uri, "--format", "csv", "SELECT count(*) AS n FROM images"]
    )
    assert query.exit_code == 0, query.output
    assert query.output.splitlines()[1] == str(local.images_extracted)
    out = tmp_path / "valid_images.json"
    exported = runner.invoke(main, ["export-json", "--store", uri, "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    export_json(tmp_path / "local", out=tmp_path / "local.json")
    assert out.read_bytes() == (tmp_path / "local.json").read_bytes()
    for result in (extract, info, query, exported):
        assert SECRET not in result.output


def test_s3_errors_name_the_store_without_secrets(s3: S3, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = f"s3://no-such-bucket/store?secret_key={SECRET}&access_key=featstore-test"
    with pytest.raises(StoreError) as raised:
        Store(missing)
    assert "no-such-bucket" in str(raised.value) and SECRET not in str(raised.value)
    with pytest.raises(StoreError, match="is not a featstore store"):
        Store(s3.uri("nothing-here"))
    result = CliRunner().invoke(
        main, ["import-json", "x.json", "--store", missing.replace("no-such-bucket", "b")]
    )
    assert result.exit_code == 1
    assert "cannot read x.json" in result.output  # the file is checked before the store
    assert SECRET not in result.output


@pytest.mark.slow
def test_dataset_and_report_on_s3(
    tmp_path: Path, s3: S3, extracted: Extracted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Dataset (through a local cache) and the report read a store on S3 as a local one."""
    import torch

    from featstore.dataset.feature_dataset import FeatureDataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    uri = s3.uri("stores/dataset")
    upload(extracted.store, uri)  # extraction into S3 is tested above
    remote = FeatureDataset(uri, extra_fields=("image_path",))
    local = FeatureDataset(extracted.store, extra_fields=("image_path",), cache_dir=tmp_path)
    assert remote.cache_folder.is_relative_to(tmp_path / "user-cache")  # mapped from local disk
    assert SECRET not in repr(remote) and remote.identities == local.identities
    everything = list(range(len(local)))
    a, b = remote.__getitems__(everything), local.__getitems__(everything)
    assert a["image_path"] == b["image_path"] and a["person_name"] == b["person_name"]
    for key in ("input_features", "position_encoding", "target_features", "target_residual"):
        assert torch.equal(a[key], b[key]), key
    assert FeatureDataset(uri).cache_folder == remote.cache_folder  # unchanged store: reused

    from featstore.report.build import read_report, write_report

    written = write_report(uri, out=tmp_path / "report.html")
    html = written.path.read_text("utf-8")
    assert SECRET not in html and "s3://featstore-test/stores/dataset" in html
    remote_data, local_data = read_report(uri), read_report(extracted.store)
    assert remote_data.counts == local_data.counts
    cli_out = tmp_path / "cli-report.html"
    result = CliRunner().invoke(main, ["report", "--store", uri, "--out", str(cli_out)])
    assert result.exit_code == 0, result.output  # a URI, not a click.Path
    assert "s3://featstore-test/stores/dataset" in cli_out.read_text("utf-8")
    assert remote_data.identities == local_data.identities


def test_identity_consistency_on_s3(s3: S3, consistency_store: Path) -> None:
    """The view reads the ArcFace model beside a one-model connection on object storage too."""
    uri = s3.uri("stores/consistency")
    upload(consistency_store, uri)
    query = "SELECT * FROM identity_consistency ORDER BY identity, frame_index"
    local = Store(consistency_store).sql(query, model=MODEL)
    remote = Store(uri).sql(query, model=MODEL)
    assert remote.num_rows == local.num_rows > 0
    assert remote == local


MODEL_384 = "dinov2_vits14"
CREDENTIALED = f"s3://featstore-test:{SECRET.replace('-', '%2D')}@bkt/p?region=us-east-1"


def test_credentials_in_the_uri_reach_delta_rs_and_never_its_bucket() -> None:
    location = resolve_store(f"{CREDENTIALED}&endpoint_override=127.0.0.1:9&scheme=http")
    uri, options = location.delta_target("model=m")
    assert uri == "s3://bkt/p/model=m"  # no user info: delta-rs read it as the bucket
    assert options["AWS_ACCESS_KEY_ID"] == "featstore-test"
    assert options["AWS_SECRET_ACCESS_KEY"] == SECRET
    assert options["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert SECRET not in repr(location) and SECRET.replace("-", "%2D") not in repr(location)


def test_credentials_as_query_options_are_refused_with_the_documented_ways() -> None:
    with pytest.raises(StoreError) as raised:
        resolve_store(f"s3://bkt/p?access_key=featstore-test&secret_key={SECRET}")
    message = str(raised.value)
    assert SECRET not in message
    assert "AWS_SECRET_ACCESS_KEY" in message and "s3://KEY:SECRET@bucket" in message


def test_import_into_s3_with_credentials_in_the_uri_only(
    tmp_path: Path, s3: S3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyarrow and delta-rs both use the URI's credentials (none in the environment); the
    summary names the store as an s3:// URI."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name)
    secret = SECRET.replace("-", "%2D")
    uri = (
        f"s3://featstore-test:{secret}@{s3.bucket}/stores/userinfo"
        f"?endpoint_override={s3.endpoint}&scheme=http"
    )
    source = tmp_path / "valid_images.json"
    source.write_text(json.dumps({"a": _identity("a")}), "utf-8")
    result = CliRunner().invoke(main, ["import-json", str(source), "--store", uri])
    assert result.exit_code == 0, result.output
    assert f"of s3://{s3.bucket}/stores/userinfo" in result.output, result.output
    assert SECRET not in result.output and secret not in result.output
    opened = Store(uri)
    assert count_rows(opened)[MODEL_384].frames == {"ok": 2}
    assert SECRET not in repr(opened) and secret not in repr(opened)


def _identity(name: str, dim: int = 384) -> dict[str, object]:
    frame = {
        "image_path": f"video/{name}/0.jpg",
        "features": [0.5] * dim,
        "landmarks_2d": [[1.0, 2.0]] * 5,
        "landmarks_3d": [[1.0, 2.0, 3.0]] * 5,
        "box": [1.0, 2.0, 3.0, 4.0],
        "spherical_angles": [0.0] * 5,
        "avg_angle": 0.5,
    }
    return {
        "face_image_path": f"face/{name}.jpg",
        "face_features": [0.25] * dim,
        "face_landmarks_2d": [[1.0, 2.0]] * 5,
        "face_landmarks_3d": [[1.0, 2.0, 3.0]] * 5,
        "face_box": [1.0, 2.0, 3.0, 4.0],
        "video_data": [frame, {**frame, "image_path": f"video/{name}/1.jpg"}],
        "feature_dim": dim,
        "dinov2_model": "dinov2_vits14",
    }
