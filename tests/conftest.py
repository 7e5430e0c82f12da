"""Shared, session-scoped stand-ins: models, datasets and one extracted store.

Everything is built once per test session under pytest's temporary folder, offline:
a synthetic InsightFace pack, random-weight DINOv2 checkpoints, a small dataset with
every awkward input of `featstore.synthetic.awkward`, and that dataset extracted once
into a store that read-only tests share (tests that modify a store copy it first).
Under pytest-xdist the workers share them too (`built_once`): the first worker to ask
builds, the others wait for it and read the same folders.
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

# pytest-xdist's workers share the cores: one thread each (OpenMP for torch, faiss and
# numpy's BLAS), inherited by the commands the tests start. More threads than cores made
# the suite spend a third more CPU, in OpenMP threads spinning while another process ran.
# Set before torch is imported (below, through featstore), which reads it once.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

import pytest
from filelock import FileLock
from s3_server import s3  # noqa: F401 - the moto S3 fixture, for every test module

from featstore.dataset.feature_dataset import FeatureDataset
from featstore.extraction.detection import DetectorSettings
from featstore.extraction.pipeline import RuntimeOptions, extract
from featstore.extraction.summary import ExtractSummary
from featstore.synthetic.awkward import write_awkward_identities, write_bad_frames, write_orphans
from featstore.synthetic.detector import write_synthetic_insightface_pack
from featstore.synthetic.dinov2_checkpoint import write_random_dinov2_checkpoint
from featstore.synthetic.images import draw_face, generate_face_tree
from featstore.trainer_json.export import export_json

MODEL = "dinov2_vits14"
MODEL_REG = "dinov2_vits14_reg"
ARCFACE = "arcface_buffalo_l"  # `--model arcface` with the test pack
INTRUDER = "zz_intruder.png"  # the frame of person_000 in `consistency_store` that is not them
DIM = 384
# The main dataset: 3 synthetic identities x 4 frames (frame 4 of each shows no face).
IDENTITIES = 3
FRAMES = 4
AWKWARD_FRAMES = 2


@dataclass(frozen=True)
class Models:
    """Stand-in model files."""

    insightface_root: Path
    weights: Path  # random dinov2_vits14
    weights_reg: Path  # random dinov2_vits14_reg

    def detector(self, **kwargs: Any) -> DetectorSettings:
        return DetectorSettings(root=self.insightface_root, **kwargs)


@dataclass(frozen=True)
class Dataset:
    """An input tree: `<root>/face`, `<root>/video`."""

    root: Path
    face_dir: Path
    video_dir: Path


@dataclass(frozen=True)
class Extracted:
    """The main dataset extracted once (read-only for tests: copy before modifying)."""

    dataset: Dataset
    store: Path
    summary: ExtractSummary


def fast_runtime(**kwargs: Any) -> RuntimeOptions:
    """In-process decoding, no progress bar, CPU: the quickest settings for small inputs."""
    options: dict[str, Any] = {"device": "cpu", "workers": 0, "progress": False, "batch_size": 8}
    options.update(kwargs)
    return RuntimeOptions(**options)


def run_extract(dataset: Dataset, store: Path, models: Models, /, **kwargs: Any) -> ExtractSummary:
    """`featstore.extract` of `dataset` with the stand-in models (kwargs override)."""
    options: dict[str, Any] = {
        "models": [MODEL],
        "weights": {MODEL: models.weights},
        "detector": models.detector(),
        "runtime": fast_runtime(),
    }
    options.update(kwargs)
    return extract(dataset.face_dir, dataset.video_dir, store, **options)


def copy_store(store: Path, dest: Path) -> Path:
    """A copy of `store` that keeps file times (the store's own checks do not need them)."""
    shutil.copytree(store, dest)
    return dest


T = TypeVar("T")


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], T]) -> T:
    """`build(folder)` once per test run, whichever xdist worker asks first; the others
    wait on a file lock and get the same (pickled) result, pointing at the same folder.

    What `build` makes is read-only for the tests (two workers read it at once)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # one process: nobody to share with
        return build(factory.mktemp(name))
    shared = factory.getbasetemp().parent / "built_once"  # the run's folder, above the workers'
    shared.mkdir(exist_ok=True)
    result = shared / f"{name}.pickle"
    with FileLock(str(shared / f"{name}.lock")):
        if not result.is_file():
            value = build(shared / name)
            result.write_bytes(pickle.dumps(value))
    return pickle.loads(result.read_bytes())  # type: ignore[no-any-return]


@pytest.fixture(scope="session", autouse=True)
def offline_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No downloads, and private torch hub and user cache folders (no real cache is touched)."""
    saved = {
        k: os.environ.get(k) for k in ("FEATSTORE_NO_DOWNLOAD", "TORCH_HOME", "XDG_CACHE_HOME")
    }
    os.environ["FEATSTORE_NO_DOWNLOAD"] = "1"
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch_home"))
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("user_cache"))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    def build(root: Path) -> Models:
        write_synthetic_insightface_pack(root / "insightface", with_recognition=True)
        return Models(
            insightface_root=root / "insightface",
            weights=write_random_dinov2_checkpoint(root / "vits14_random.pth", MODEL, seed=0),
            weights_reg=write_random_dinov2_checkpoint(
                root / "vits14_reg_random.pth", MODEL_REG, seed=1
            ),
        )

    return built_once(tmp_path_factory, "models", build)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """3 identities x 4 frames, the awkward identities, the bad frames and the orphans."""

    def build(root: Path) -> Dataset:
        face_dir, video_dir = generate_face_tree(
            root, identities=IDENTITIES, frames_per_identity=FRAMES, no_face_every=4
        )
        write_awkward_identities(face_dir, video_dir, frames=AWKWARD_FRAMES)
        write_bad_frames(face_dir, video_dir)
        write_orphans(face_dir, video_dir)
        return Dataset(root, face_dir, video_dir)

    return built_once(tmp_path_factory, "dataset", build)


@pytest.fixture(scope="session")
def mini_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """2 identities x 3 frames (the third shows no face): for tests that extract again."""

    def build(root: Path) -> Dataset:
        face_dir, video_dir = generate_face_tree(
            root, identities=2, frames_per_identity=3, no_face_every=3, seed=5
        )
        return Dataset(root, face_dir, video_dir)

    return built_once(tmp_path_factory, "mini", build)


@pytest.fixture(scope="session")
def extracted(
    tmp_path_factory: pytest.TempPathFactory, dataset: Dataset, models: Models
) -> Extracted:
    def build(root: Path) -> Extracted:
        return Extracted(dataset, root / "store", run_extract(dataset, root / "store", models))

    return built_once(tmp_path_factory, "extracted", build)


@pytest.fixture(scope="session")
def old_json(
    tmp_path_factory: pytest.TempPathFactory, extracted: Extracted, models: Models
) -> Path:
    """`extracted` exported in the seed's old format, opened once by FeatureDataset, which
    extracted its images into the store beside it (`old.json.featstore`)."""

    def build(root: Path) -> Path:
        out = root / "old.json"
        export_json(extracted.store, out=out, format="old")
        FeatureDataset(out, model=MODEL, cache_dir=root / "cache", **old_json_options(models))
        return out

    return built_once(tmp_path_factory, "old_json", build)


def old_json_options(models: Models) -> dict[str, Any]:
    """What FeatureDataset needs to extract an old-format JSON's images."""
    return {
        "weights": {MODEL: models.weights},
        "detector": models.detector(),
        "runtime": fast_runtime(),
    }


@pytest.fixture(scope="session")
def consistency_store(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Path:
    """3 identities x 4 frames (the 4th shows no face), one intruder frame in person_000."""

    def build(root: Path) -> Path:
        face_dir, video_dir = generate_face_tree(
            root, identities=3, frames_per_identity=4, no_face_every=4, seed=5
        )
        intruder = draw_face((320, 240), tint=(0.7, 1.0, 1.3), brightness=1.0, seed=9)
        intruder.save(video_dir / "person_000" / INTRUDER)
        dataset = Dataset(root, face_dir, video_dir)
        run_extract(dataset, root / "store", models, models=[MODEL, "arcface"])
        return root / "store"

    return built_once(tmp_path_factory, "consistency", build)


# The neighbors store (`neighbors_store`): person_001's folder copied as COPIED_IDENTITY,
# and a frame of person_002 copied into person_003 as COPIED_FRAME.
COPIED_IDENTITY = "person_dup"
COPIED_FRAME = "zz_copied.jpg"


@pytest.fixture(scope="session")
def neighbors_store(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Path:
    """5 identities x 3 frames and the two planted duplicates, DINOv2 and ArcFace."""

    def build(root: Path) -> Path:
        face_dir, video_dir = generate_face_tree(
            root, identities=5, frames_per_identity=3, no_face_every=0, seed=3
        )
        shutil.copy(face_dir / "person_001.jpg", face_dir / f"{COPIED_IDENTITY}.jpg")
        shutil.copytree(video_dir / "person_001", video_dir / COPIED_IDENTITY)
        shutil.copy(
            video_dir / "person_002" / "frame_0001.jpg", video_dir / "person_003" / COPIED_FRAME
        )
        dataset = Dataset(root, face_dir, video_dir)
        run_extract(dataset, root / "store", models, models=[MODEL, "arcface"])
        return root / "store"

    return built_once(tmp_path_factory, "neighbors", build)


# The modules that take longest, longest first: pytest-xdist (--dist loadscope) hands out
# whole modules in collection order, so starting these first keeps one worker from running
# a long module alone at the end (measured on 2 cores: Ray 50-70 s, the rest 15-30 s).
LONGEST_FIRST = (
    "tests/extraction/test_ray_engine.py",
    "tests/test_readme.py",
    "tests/store/test_delta_kills.py",
    "tests/extraction/test_interrupt.py",
    "tests/store/test_storage.py",
    "tests/store/test_delta_concurrency.py",
    "tests/report/test_report.py",
    "tests/dataset/test_dataset.py",
    "tests/extraction/test_resume.py",
    "tests/extraction/test_shard.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
