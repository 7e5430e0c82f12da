"""The command line: help texts, `extract`'s output and its clean errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from conftest import MODEL, Dataset, Models
from featstore_cli.main import main

import featstore


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def extract_args(dataset: Dataset, store: Path, models: Models) -> list[str | Path]:
    return [
        "extract",
        "--face-dir",
        dataset.face_dir,
        "--video-dir",
        dataset.video_dir,
        "--store",
        store,
        "--model",
        MODEL,
        "--weights",
        models.weights,
        "--insightface-root",
        models.insightface_root,
        "--cpu",
        "--workers",
        "0",
        "--no-progress",
    ]


def assert_clean_error(result: Result, message: str, exit_code: int = 1) -> None:
    assert result.exit_code == exit_code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help(name: str) -> None:
    command = main.commands[name]
    assert command.help and command.help.strip()
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{name} {param.opts} has no help"
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    first_line = command.help.strip().splitlines()[0]
    assert first_line in " ".join(result.output.split())  # help text is re-wrapped


def test_main_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for name, command in main.commands.items():
        assert name in result.output
        assert command.get_short_help_str()[:20] in " ".join(result.output.split())


def test_extract_prints_the_summary(tmp_path: Path, mini_dataset: Dataset, models: Models) -> None:
    store = tmp_path / "store"
    args = extract_args(mini_dataset, store, models)
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "extracted 8 images of 2 identities" in result.output
    assert "this run: ok 6, no_face 2, unreadable 0" in result.output
    assert f"store [{MODEL}]: 2 identities, 2 valid (100.0%)" in result.output
    assert result.output.rstrip().endswith(f"store: {store}")

    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "extracted 0 images of 0 identities" in again.output
    assert "2 identities already up to date" in again.output

    refused = invoke(*args, "--det-thresh", "0.6")
    assert_clean_error(refused, "holds rows made with other settings (stored -> this run)")
    assert "detector.det_thresh: stored 0.5 -> now 0.6" in refused.output  # only what differs
    assert "det_size" not in refused.output and "model_sha256" not in refused.output
    assert "Hint:" in refused.output


def test_missing_face_dir(tmp_path: Path, mini_dataset: Dataset, models: Models) -> None:
    missing = tmp_path / "faces"
    args = extract_args(Dataset(tmp_path, missing, mini_dataset.video_dir), tmp_path / "s", models)
    assert_clean_error(invoke(*args), f"Error: --face-dir {missing} does not exist.")


@pytest.mark.parametrize("value", ["a=b", "dinov2_vitb14=weights.pth"])
def test_weights_for_a_model_not_requested(
    tmp_path: Path, mini_dataset: Dataset, models: Models, value: str
) -> None:
    args = extract_args(mini_dataset, tmp_path / "store", models)
    args[args.index("--weights") + 1] = value
    model = value.split("=")[0]
    assert_clean_error(
        invoke(*args),
        f"--weights {value}: model '{model}' is not among the requested models ({MODEL})",
    )
    assert not (tmp_path / "store").exists()


def test_cpu_and_device_are_exclusive(
    tmp_path: Path, mini_dataset: Dataset, models: Models
) -> None:
    args = extract_args(mini_dataset, tmp_path / "store", models)
    result = invoke(*args, "--device", "cuda")
    assert_clean_error(result, "--cpu and --device are exclusive", exit_code=2)
    assert "Usage:" in result.output
    assert not (tmp_path / "store").exists()


def test_python_m_featstore_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "featstore", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"featstore, version {featstore.__version__}"


def test_reading_commands_start_without_torch() -> None:
    """`query`, `info` and the other readers answer in a fraction of a second: loading the
    command line must not import torch (about a second) or the models' other libraries."""
    import subprocess
    import sys

    code = (
        "import sys, featstore_cli.main; print(sorted({'torch', 'onnxruntime'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_validate_help_names_every_format_it_checks() -> None:
    result = invoke("validate", "--help")
    text = " ".join(result.output.split())
    assert "new, old or 3D format" in text, text
