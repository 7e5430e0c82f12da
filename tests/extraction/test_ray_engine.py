"""The Ray engine on a real local Ray cluster (2 CPUs): same rows as the local engine,
a worker killed mid-run loses nothing, and no Ray process outlives the tests."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType, ModuleType

import pytest
from conftest import ARCFACE, MODEL, Dataset, Extracted, Models, fast_runtime, run_extract
from store_checks import assert_same_rows, table_rows
from store_checks import identities as identities_of

from featstore.errors import InputError, StoreError
from featstore.extraction.ray_engine import RayOptions
from featstore.store import Store
from featstore.synthetic.images import generate_face_tree

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'featstore-faces[ray]')")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]
MODULE_TIME_LIMIT_S = 300  # the whole module, cluster start and shutdown included
FAST = RayOptions(ready_timeout_s=120)


def _children() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":  # a zombie has exited already
                parents[int(entry)] = int(fields[1])
    return parents


def _descendants(pid: int) -> set[int]:
    parents = _children()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return f"{pid} (gone)"


def _actor_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if entry.isdigit() and cmdline.startswith(b"ray::_IdentityWorker"):
            pids.append(int(entry))
    return pids


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[ModuleType]:
    """A local Ray cluster for this module; afterwards no raylet, GCS or worker is left."""

    def too_slow(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"the Ray tests took more than {MODULE_TIME_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(MODULE_TIME_LIMIT_S)
    before = _descendants(os.getpid())  # e.g. a forkserver of earlier tests: not Ray's
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
    )
    try:
        yield ray
    finally:
        spawned = _descendants(os.getpid()) - before
        ray.shutdown()
        deadline = time.monotonic() + 30
        while (left := spawned & set(_children())) and time.monotonic() < deadline:
            time.sleep(0.1)
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        assert not left, f"Ray processes left after shutdown: {[_cmdline(p) for p in left]}"


def test_ray_engine_writes_the_rows_of_the_local_engine(
    tmp_path: Path, ray_cluster: ModuleType, extracted: Extracted, models: Models
) -> None:
    """Every awkward and bad input of the `dataset` fixture, compared file by file."""
    store = tmp_path / "ray"
    summary = run_extract(extracted.dataset, store, models, engine="ray", ray_options=FAST)
    local = extracted.summary
    assert summary.engine == "ray" and "(ray)" in summary.format()
    assert summary.identities_extracted == local.identities_extracted
    assert summary.images_extracted == local.images_extracted
    assert summary.run_counts == local.run_counts
    assert summary.store_counts == local.store_counts
    assert summary.detector_providers == ("CPUExecutionProvider",)
    expected = Store(extracted.store).model(MODEL).provenance
    assert Store(store).model(MODEL).provenance == expected
    assert_same_rows(table_rows(store), table_rows(extracted.store))

    again = run_extract(extracted.dataset, store, models, engine="ray", ray_options=FAST)
    assert again.identities_extracted == 0 and again.images_extracted == 0
    # The local engine sees the Ray engine's store as up to date, and vice versa.
    assert run_extract(extracted.dataset, store, models).images_extracted == 0


def test_ray_engine_runs_arcface_as_the_local_engine_does(
    tmp_path: Path, ray_cluster: ModuleType, models: Models
) -> None:
    face_dir, video_dir = generate_face_tree(
        tmp_path / "data", identities=2, frames_per_identity=3, no_face_every=3, seed=4
    )
    dataset = Dataset(tmp_path / "data", face_dir, video_dir)
    both = [MODEL, "arcface"]
    local = run_extract(dataset, tmp_path / "local", models, models=both)
    remote = run_extract(
        dataset, tmp_path / "ray", models, models=both, engine="ray", ray_options=FAST
    )
    assert remote.models == local.models == (MODEL, ARCFACE)
    assert remote.store_counts == local.store_counts
    for model in (MODEL, ARCFACE):
        assert identities_of(tmp_path / "local", model) == identities_of(tmp_path / "ray", model)
        assert_same_rows(table_rows(tmp_path / "ray", model), table_rows(tmp_path / "local", model))


def test_a_worker_killed_mid_run_loses_nothing(
    tmp_path: Path, ray_cluster: ModuleType, models: Models
) -> None:
    identities, frames = 8, 5
    face_dir, video_dir = generate_face_tree(
        tmp_path / "data", identities=identities, frames_per_identity=frames, seed=11
    )
    dataset = Dataset(tmp_path / "data", face_dir, video_dir)
    store = tmp_path / "store"
    killed: list[tuple[int, int]] = []  # (pid, partitions written when it was killed)

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            written, workers = len(committed(store)), _actor_pids()
            if written >= 1 and len(workers) == 2:
                os.kill(workers[0], signal.SIGKILL)
                killed.append((workers[0], written))
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    summary = run_extract(
        dataset, store, models, engine="ray", ray_options=RayOptions(workers_per_node=2)
    )
    killer.join()
    assert killed, "no worker was killed: the run ended before the killer found two"
    assert killed[0][1] < identities, "the run finished before the kill: make it bigger"
    assert summary.identities_extracted == identities
    assert summary.timings["workers"] == 2

    reference = tmp_path / "reference"
    run_extract(dataset, reference, models)
    assert identities_of(store) == identities_of(reference)
    rows = table_rows(store)  # complete, no duplicate rows (assert_same_rows checks)
    assert rows.num_rows == identities * (frames + 1)
    assert_same_rows(rows, table_rows(reference))
    assert run_extract(dataset, store, models).images_extracted == 0


def committed(store: Path) -> list[str]:
    """Identities committed so far ([] before the table exists), polled while Ray runs."""
    try:
        return identities_of(store)
    except StoreError:  # the table being created at this very moment
        return []


def test_ray_engine_refuses_a_gpu_index_and_extracts_nothing(
    tmp_path: Path, ray_cluster: ModuleType, mini_dataset: Dataset, models: Models
) -> None:
    with pytest.raises(InputError, match="Ray assigns GPUs to workers"):
        runtime = fast_runtime(device="cuda:1")
        run_extract(mini_dataset, tmp_path / "s", models, engine="ray", runtime=runtime)
    assert not (tmp_path / "s").exists()
