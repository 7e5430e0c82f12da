"""The README, run: its marked `sh` commands and `python` snippets, against stand-in models.

Every fenced block in README.md carries a marker on the line before it:

- `<!-- readme-test: run -->`: each command (`featstore ...`) runs through the CLI in-process,
  in order, and must exit 0;
- `<!-- readme-test: python -->`: the snippet is saved as a script and run with
  `python script.py` in a fresh process, as a user would (this is what catches a missing
  `if __name__ == "__main__":` guard);
- `<!-- readme-test: skip: REASON -->`: not run (it installs, needs a cluster, ...).

All blocks run in one folder laid out as a user's would be after `make demo`:
`demo-output/` (the demo's data, stand-in models and store, smaller than the real demo's),
`data/face` and `data/video` (the same images), the synthetic InsightFace pack in
`~/.insightface/models/buffalo_l` and the random DINOv2 checkpoint in torch hub's cache
(`HOME` and `TORCH_HOME` point into the test's folder). The stand-in checkpoint is a
`dinov2_vits14`, so `dinov2_vitb14` in the README is read as `dinov2_vits14` (a random
vitb14 would cost seconds and 350 MB for nothing the test checks).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from featstore_cli.main import main

from featstore.demo import DEMO_MODEL, build_demo_inputs, extract_demo

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- readme-test: (run|python|skip: .+) -->$")
# The README's default model, read as the stand-in that the test can afford.
SUBSTITUTIONS = {"dinov2_vitb14": DEMO_MODEL}


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    mode: str  # run | python | skip: reason
    text: str


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block of `text` with the marker on the line before it ('' if none)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            language = lines[i][3:].strip()
            end = lines.index("```", i + 1)
            marker = MARKER.match(lines[i - 1]) if i else None
            blocks.append(
                Block(
                    i + 1,
                    language,
                    marker.group(1) if marker else "",
                    "\n".join(lines[i + 1 : end]),
                )
            )
            i = end
        i += 1
    return blocks


def shell_commands(block: Block) -> list[list[str]]:
    """The block's commands as argument lists: continuations joined, comments dropped."""
    joined = block.text.replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in joined.splitlines()]
    return [c for c in commands if c]


def substitute(text: str) -> str:
    for old, new in SUBSTITUTIONS.items():
        text = text.replace(old, new)
    return text


BLOCKS = readme_blocks(README.read_text("utf-8"))


def test_every_block_is_marked() -> None:
    unmarked = [f"README.md:{b.line}" for b in BLOCKS if not b.mode]
    assert not unmarked, (
        f"fenced blocks without a readme-test marker: {unmarked}; put "
        "<!-- readme-test: run -->, <!-- readme-test: python --> or "
        "<!-- readme-test: skip: REASON --> on the line before each"
    )
    runnable = [b for b in BLOCKS if b.mode in ("run", "python")]
    assert len(runnable) >= 8  # the README's commands are run, not only skipped
    for block in runnable:
        assert block.language == ("python" if block.mode == "python" else "sh"), block.line


def test_only_featstore_commands_are_run() -> None:
    for block in BLOCKS:
        if block.mode == "run":
            for command in shell_commands(block):
                assert command[0] == "featstore", f"README.md:{block.line}: {command}"


@pytest.fixture(scope="module")
def first_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's folder after `make demo`, with the real models' usual places filled."""
    work = tmp_path_factory.mktemp("first-day")
    cwd = Path.cwd()
    os.chdir(work)
    try:
        # Smaller than the real demo (no awkward names or bad files): three extractions
        # of it run here, and the awkward inputs have tests of their own.
        inputs = build_demo_inputs(Path("demo-output"), identities=3, frames=2, awkward=False)
        extract_demo(inputs, Path("demo-output/store"), progress=False)
    finally:
        os.chdir(cwd)
    data = work / "data"
    data.mkdir()
    (data / "face").symlink_to(work / inputs.face_dir, target_is_directory=True)
    (data / "video").symlink_to(work / inputs.video_dir, target_is_directory=True)
    (work / "seed").mkdir()
    home = work / "home"
    (home / ".insightface" / "models").mkdir(parents=True)
    (home / ".insightface" / "models" / "buffalo_l").symlink_to(
        work / inputs.insightface_root / "models" / "buffalo_l", target_is_directory=True
    )
    checkpoints = home / ".cache" / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / f"{DEMO_MODEL}_pretrain.pth").symlink_to(work / inputs.weights)
    return work


@pytest.fixture
def in_first_day(first_day: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(first_day)
    monkeypatch.setenv("HOME", str(first_day / "home"))
    monkeypatch.setenv("TORCH_HOME", str(first_day / "home" / ".cache" / "torch"))
    return first_day


def test_the_demo_prints_the_readme_extract_command(in_first_day: Path) -> None:
    """What `featstore demo` prints is the README's command, letter for letter."""
    inputs = build_demo_inputs(Path("demo-output"))  # already there: nothing is rebuilt
    command = inputs.extract_command(Path("demo-output/store"))
    assert command in README.read_text("utf-8")


@pytest.mark.slow
def test_readme_blocks_run_in_order(in_first_day: Path) -> None:
    """Blocks run in README order: the quick start's store feeds query, export, report."""
    ran = 0
    for block in BLOCKS:
        if block.mode == "run":
            for command in shell_commands(block):
                args = [substitute(a) for a in command[1:]]
                result = CliRunner().invoke(main, args)
                where = f"README.md:{block.line}: featstore {shlex.join(args)}"
                assert result.exit_code == 0, f"{where}\n{result.output}"
                assert "Traceback" not in result.output, where
                ran += 1
        elif block.mode == "python":
            script = in_first_day / f"readme_{block.line}.py"
            script.write_text(substitute(block.text) + "\n", "utf-8")
            done = subprocess.run(
                [sys.executable, script.name],
                cwd=in_first_day,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"README.md:{block.line}\n{done.stdout}\n{done.stderr}"
            ran += 1
    assert ran >= 15
    # What the commands were meant to leave behind.
    for made in ("store", "valid_images.json", "imported", "report.html", "near_frontal.html"):
        assert (in_first_day / made).exists(), made
    assert (in_first_day / "seed" / "valid_images.json").is_file()
    assert (in_first_day / "near_frontal.parquet").is_file()


def test_user_facing_text_names_no_spec() -> None:
    """Users have docs/formats.md, not the project's internal SPEC: no "SPEC §n" anywhere."""
    spec = re.compile(r"\bSPEC\b(?!S)|where the spec is silent")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("featstore", "cli", "docs", "examples")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".py", ".md")
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if spec.search(line)
    ]
    assert not found, f"mentions of SPEC, which users do not have: {found}"
    assert spec.search(README.read_text("utf-8")) is None
    assert (ROOT / "docs" / "formats.md").is_file()
    assert "docs/formats.md" in README.read_text("utf-8")


def test_distribution_name_and_license_install_cleanly() -> None:
    """`featstore` on PyPI is another project; an SPDX string keeps setuptools quiet."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["name"] == "featstore-faces"
    assert isinstance(project["license"], str)  # not a {text = ...} table (deprecated)
    readme = README.read_text("utf-8")
    assert "pip install featstore " not in readme and "pip install featstore\n" not in readme


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_bench_is_quick_unless_full() -> None:
    def commands(*args: str) -> list[str]:
        done = subprocess.run(
            ["make", "-n", "-o", "install", "bench", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return [line for line in done.stdout.splitlines() if "bench/" in line]

    quick, full = commands(), commands("FULL=1")
    assert len(quick) == len(full) == 9
    # bench_pose sizes itself by trials, not identities: quick unless --full.
    pose_quick, pose_full = quick.pop(), full.pop()
    assert "bench_pose.py" in pose_quick and "--full" not in pose_quick
    assert "bench_pose.py --full" in pose_full
    assert all("--identities" in line for line in quick)
    assert not any("--identities" in line for line in full)  # the scripts' full defaults
