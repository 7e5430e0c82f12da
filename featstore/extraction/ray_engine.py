"""The Ray engine: the same identities, models and store as the local engine, on a cluster.

    driver (featstore extract --engine ray)              actors (N per node)
    scan, plan, claim provenance  -- IdentityJob -->     Extractor.extract_identity:
    keep `in_flight` jobs per actor <-- counts ----      decode, detect, embed, write

The unit of work is one identity: an actor decodes its images, runs the models (loaded
once, when the actor starts) and writes its partitions, whole, exactly as the local
engine does (`featstore.extraction.extractor.Extractor`). Two identities are in flight per actor, so
one decodes while the other runs the models. An actor that dies (a lost node, OOM) is
restarted by Ray and its identities in flight are retried (`max_restarts`,
`max_task_retries`); one that cannot be restarted has them resubmitted to the others.
A rerun skips finished identities as locally.

Ray is optional (`pip install 'featstore-faces[ray]'`) and imported only here, when used.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from featstore.errors import FeatstoreError, InputError

if TYPE_CHECKING:
    from featstore.extraction.extractor import Extractor, IdentityJob, WorkerSpec

log = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'featstore-faces[ray]'"


@dataclass(frozen=True)
class RayOptions:
    """Where the Ray cluster is and how featstore places its workers on it.

    Args:
        address: the cluster (`ray.init(address=...)`, e.g. "auto" or "ray://head:10001");
            None: the cluster of `RAY_ADDRESS`, else a local one started for this run.
        gpus_per_worker: GPUs each actor reserves (0.5: two actors share a GPU); None: 1
            when the cluster has GPUs and the device is not the CPU, else 0.
        workers_per_node: actors per node; None: one per `gpus_per_worker` GPUs of the
            node, or one per node on CPUs (its torch threads use the node's CPUs).
        in_flight: identities queued per actor (2: one decodes while one runs the models).
        max_restarts: times Ray restarts a dead actor (and retries its identities in flight).
        ready_timeout_s: how long to wait for actors to start (load their models).
    """

    address: str | None = None
    gpus_per_worker: float | None = None
    workers_per_node: int | None = None
    in_flight: int = 2
    max_restarts: int = 3
    ready_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise InputError(f"--gpus-per-worker must be 0 or more, got {self.gpus_per_worker}.")
        if self.workers_per_node is not None and self.workers_per_node < 1:
            raise InputError(f"--workers-per-node must be at least 1, got {self.workers_per_node}.")
        if self.in_flight < 1:
            raise InputError(f"in_flight must be at least 1, got {self.in_flight}.")


def import_ray() -> ModuleType:
    """The `ray` module, or an InputError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise InputError(
            f"--engine ray needs Ray, which is not installed here.\nHint: {INSTALL_HINT}"
        ) from exc
    return ray


@contextmanager
def ray_session(options: RayOptions) -> Iterator[ModuleType]:
    """Ray, connected: to the running session, to `options.address`, or to a new local one.

    A cluster started here is shut down on exit; a session the caller opened is left open.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"address": options.address, "logging_level": logging.WARNING}
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise FeatstoreError(
            f"cannot reach the Ray cluster at {options.address or 'RAY_ADDRESS'}: {exc}\n"
            "Hint: start it with `ray start --head` (workers: `ray start --address HEAD:6379`), "
            "or leave --ray-address out to run a local one."
        ) from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def worker_device(ray: ModuleType, requested: str | None, options: RayOptions) -> str:
    """The torch device of the actors: Ray hands each its GPUs, so "cuda" or "cpu"."""
    if requested is not None and requested.startswith("cuda:"):
        raise InputError(
            f"--device {requested}: with --engine ray, Ray assigns GPUs to workers.\n"
            "Hint: use --device cuda (or leave it out) and --gpus-per-worker."
        )
    gpus = _gpus_per_worker(ray, requested, options)
    if requested == "cuda" and gpus == 0:
        raise InputError(
            "--device cuda with --engine ray, but the workers get no GPU "
            "(--gpus-per-worker 0, or a cluster without GPUs)."
        )
    return "cuda" if gpus > 0 else "cpu"


def _gpus_per_worker(ray: ModuleType, requested: str | None, options: RayOptions) -> float:
    if requested == "cpu":
        return 0.0
    if options.gpus_per_worker is not None:
        return options.gpus_per_worker
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


@dataclass(frozen=True)
class _Placement:
    node_id: str
    cpus: int  # reserved, and the actor's torch threads
    gpus: float


def _placements(ray: ModuleType, device: str, options: RayOptions) -> list[_Placement]:
    """`workers_per_node` actors on every alive node that has room for them."""
    gpus = _gpus_per_worker(ray, device, options)
    placements = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        node_cpus, node_gpus = int(resources.get("CPU", 0)), resources.get("GPU", 0)
        if gpus > 0:
            count = options.workers_per_node or int(node_gpus // gpus)
            count = min(count, int(node_gpus // gpus))
        else:
            count = options.workers_per_node or 1
        count = min(count, node_cpus)  # each actor reserves at least one CPU
        for _ in range(count):
            placements.append(_Placement(node["NodeID"], max(1, node_cpus // count), gpus))
    if not placements:
        raise FeatstoreError(
            f"no node of the Ray cluster can hold a worker (1 CPU and {gpus:g} GPU each).\n"
            "Hint: check `ray status`; on CPUs pass --gpus-per-worker 0 (or --cpu)."
        )
    return placements


class _IdentityWorker:
    """A Ray actor: loads the models once, then extracts identities sent to it."""

    def __init__(self, spec: WorkerSpec, threads: int) -> None:
        import torch

        from featstore.extraction.extractor import Extractor

        torch.set_num_threads(threads)
        self.extractor: Extractor = Extractor(spec)

    def providers(self) -> list[str]:
        return list(self.extractor.detector.providers)

    def extract(self, job: IdentityJob) -> dict[str, int]:
        return self.extractor.extract_identity(job)


@dataclass(frozen=True)
class RayRun:
    """What `run_on_ray` reports back to `extract`."""

    providers: list[str]
    timings: dict[str, float]


def run_on_ray(
    ray: ModuleType,
    plan: list[IdentityJob],
    spec: WorkerSpec,
    options: RayOptions,
    counts: dict[str, int],
) -> RayRun:
    """Extract `plan` on actors of the connected cluster; `counts` gets the images by status."""
    from tqdm import tqdm

    started = time.perf_counter()
    actors, providers = _start_actors(ray, spec, options)
    ready = time.perf_counter()
    log.info("%d Ray workers ready in %.1f s", len(actors), ready - started)
    queue = deque(plan)
    in_flight: dict[Any, tuple[Any, IdentityJob]] = {}
    load = {actor: 0 for actor in actors}
    attempts: dict[str, int] = {}
    images = sum(len(job.tasks()) for job in plan)
    bar = tqdm(total=images, unit="img", disable=not spec.runtime.progress, dynamic_ncols=True)

    def fill() -> None:
        for actor in list(load):
            while queue and load[actor] < options.in_flight:
                job = queue.popleft()
                in_flight[actor.extract.remote(job)] = (actor, job)
                load[actor] += 1

    try:
        fill()
        while in_flight:
            [ref], _ = ray.wait(list(in_flight), num_returns=1)
            actor, job = in_flight.pop(ref)
            if actor in load:
                load[actor] -= 1
            try:
                done = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                # Dead beyond its restarts: resubmit its identity to the others.
                load.pop(actor, None)
                name = job.inputs.identity
                attempts[name] = attempts.get(name, 0) + 1
                if not load or attempts[name] > options.max_restarts:
                    raise FeatstoreError(
                        f"Ray workers died while extracting identity {name!r}: {exc}\n"
                        "Hint: finished identities are saved; rerun the same command to resume."
                    ) from exc
                log.warning("a Ray worker died; identity %r goes to another one", name)
                queue.appendleft(job)
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, FeatstoreError):
                    raise cause from exc
                raise FeatstoreError(
                    f"extracting identity {job.inputs.identity!r} failed on a Ray worker: {exc}"
                ) from exc
            else:
                for status, n in done.items():
                    counts[status] = counts.get(status, 0) + n
                bar.update(len(job.tasks()))
            fill()
    finally:
        bar.close()
        for actor in actors:
            ray.kill(actor)
    return RayRun(
        providers,
        {
            "models_s": ready - started,
            "processing_s": time.perf_counter() - ready,
            "workers": float(len(actors)),
        },
    )


def _start_actors(
    ray: ModuleType, spec: WorkerSpec, options: RayOptions
) -> tuple[list[Any], list[str]]:
    """Start the actors, wait until their models are loaded; the detector's providers."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    worker = ray.remote(_IdentityWorker)
    actors = [
        worker.options(
            num_cpus=p.cpus,
            num_gpus=p.gpus,
            max_restarts=options.max_restarts,
            max_task_retries=options.max_restarts,
            max_concurrency=options.in_flight,
            scheduling_strategy=NodeAffinitySchedulingStrategy(p.node_id, soft=False),
        ).remote(spec, p.cpus)  # inline (small): a restarted actor gets it again
        for p in _placements(ray, spec.device, options)
    ]
    pings = {actor.providers.remote(): actor for actor in actors}
    ready, waiting = ray.wait(list(pings), num_returns=len(pings), timeout=options.ready_timeout_s)
    started, providers = [], set()
    for ref in ready:
        try:
            providers.update(ray.get(ref))
        except ray.exceptions.RayError as exc:
            for actor in actors:
                ray.kill(actor)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, FeatstoreError):
                raise cause from exc
            raise FeatstoreError(f"a Ray worker could not load the models: {exc}") from exc
        started.append(pings[ref])
    for ref in waiting:  # no room on the cluster for them in time
        ray.kill(pings[ref])
    if not started:
        raise FeatstoreError(
            f"no Ray worker started within {options.ready_timeout_s:g} s.\n"
            "Hint: check `ray status` for free CPUs/GPUs, or lower --workers-per-node."
        )
    if waiting:
        log.warning("%d of %d Ray workers did not start in time", len(waiting), len(actors))
    return started, sorted(providers)
