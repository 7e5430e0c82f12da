"""The local engine: one process decodes in DataLoader workers, runs the models on its
main thread and writes behind, in a thread.

    DataLoader workers        main thread                         writer thread
    decode, resize, letterbox -> detect (batch) -> DINOv2 (batch) -> rows + angles -> store
    (prefetching batches)        per model, faces only                 one identity at a time

The models never wait on file I/O: decoding runs ahead in worker processes and
writing happens behind, in a thread (pyarrow releases the GIL while writing).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from featstore.errors import FeatstoreError, Interrupted
from featstore.extraction import PROGRESS_LOGGER
from featstore.extraction.decoding import DecodeDataset, DecodedBatch, collate, init_worker
from featstore.extraction.detection import FaceDetector
from featstore.extraction.extractor import Extractor, IdentityJob, WorkerSpec
from featstore.extraction.rows import NO_POSE, ImageResult

_MAX_PENDING_WRITES = 64  # identities queued for the writer before the models wait


@dataclass
class _Pending:
    """An identity in flight in the local engine: its results fill up as batches come back."""

    job: IdentityJob
    results: list[ImageResult | None]
    remaining: int = field(init=False)

    def __post_init__(self) -> None:
        self.remaining = len(self.results)


def run_local(
    plan: list[IdentityJob],
    spec: WorkerSpec,
    detector: FaceDetector,
    counts: dict[str, int],
) -> dict[str, float]:
    """The local engine: decode, detect, embed and write `plan`; the time spent by phase."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    started = time.perf_counter()
    runtime = spec.runtime
    pending_plan = [_Pending(job, [None] * len(job.tasks())) for job in plan]
    tasks = [task for job in plan for task in job.tasks()]
    workers = (
        runtime.workers
        if runtime.workers is not None
        else max(1, min(8, (os.cpu_count() or 2) - 1))
    )
    loader = DataLoader(
        DecodeDataset(tasks, detector.settings.det_size, keep_image=spec.keeps_images),
        batch_size=runtime.batch_size,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=init_worker if workers else None,
        pin_memory=spec.device.startswith("cuda"),
        prefetch_factor=4 if workers else None,
        # Never fork: a process that already ran OpenCV or OpenMP thread pools (a notebook
        # that extracted before, a caller that decoded images) deadlocks its forked children.
        multiprocessing_context=_worker_start_method() if workers else None,
    )
    # Workers start now and decode ahead while the DINOv2 weights load.
    batches = iter(loader)
    extractor = Extractor(spec, detector)
    loaded = time.perf_counter()
    # Each task's slot in its identity's result list, in task order.
    slots = [(pending, i) for pending in pending_plan for i in range(len(pending.results))]
    writes: list[Future[None]] = []

    def write(pending: _Pending) -> None:
        results = [r for r in pending.results if r is not None]
        extractor.write(pending.job, results)  # solves the head poses, off the main thread
        # Only this (writer) thread counts poses: no race with the main thread's counts.
        counts[NO_POSE] += sum(r.without_pose for r in results)

    bar = tqdm(total=len(tasks), unit="img", disable=not runtime.progress, dynamic_ncols=True)
    heartbeat = Heartbeat(len(tasks)) if not runtime.progress else None
    position = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="featstore-writer") as writer:
        try:
            for batch in _batches(batches):
                results = extractor.process_batch(batch, _models_from(slots, position))
                for result in results:
                    pending, slot = slots[position]
                    pending.results[slot] = result
                    pending.remaining -= 1
                    counts[result.status] += 1
                    position += 1
                    if pending.remaining == 0:
                        writes.append(writer.submit(write, pending))
                bar.update(len(results))
                if heartbeat is not None:
                    heartbeat.update(len(results))
                writes = _drain(writes, keep=_MAX_PENDING_WRITES)
            _drain(writes, keep=0)
            writer.submit(extractor.flush).result()  # the last, partial batch
        except KeyboardInterrupt:
            bar.close()
            raise save_finished(writer, writes, extractor, total=len(plan)) from None
        finally:
            bar.close()
    return {"models_s": loaded - started, "processing_s": time.perf_counter() - loaded}


# How long the last commit after Ctrl-C / SIGTERM may take before featstore gives up on it
# (a commit of one batch takes well under a second on a local disk).
FINAL_COMMIT_S = 30.0


def save_finished(
    writer: ThreadPoolExecutor, writes: list[Future[None]], extractor: Extractor, *, total: int
) -> Interrupted:
    """After Ctrl-C or SIGTERM: commit the identities already finished in one last commit,
    bounded by `FINAL_COMMIT_S`; the `Interrupted` to raise says how many were saved.

    The identities still being decoded or embedded are dropped (the rerun redoes them).
    Meanwhile a second Ctrl-C or SIGTERM stops the process at once (the signals' default
    action): a commit is atomic, so that loses this last batch and nothing else.
    """
    deadline = time.monotonic() + FINAL_COMMIT_S
    saved_before = extractor.committed_identities()
    with _signals_stop_at_once():
        try:
            for future in writes:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            writer.submit(extractor.flush).result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            writer.shutdown(wait=False, cancel_futures=True)
            return Interrupted(
                f"interrupted; the last commit did not finish within {FINAL_COMMIT_S:.0f} s: "
                f"{saved_before} of {total} identities were saved before it. Rerun the same "
                "command to resume (it redoes only the identities not saved)."
            )
    saved = extractor.committed_identities()
    return Interrupted(
        f"interrupted; {saved} of {total} identities to extract were saved (committed to the "
        f"store). Rerun the same command to resume: it redoes only the other {total - saved}."
    )


@contextlib.contextmanager
def _signals_stop_at_once() -> Iterator[None]:
    """SIGINT and SIGTERM back to their default action (end the process) for the block."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may change signal handlers
        return
    saved = {s: signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a scheduler's stop, `kill`) raises KeyboardInterrupt, as Ctrl-C does, so a
    stopped run saves its finished identities too (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# Seconds between two progress log lines when the bar is off (--no-progress).
HEARTBEAT_S = 60.0


class Heartbeat:
    """A log line every `HEARTBEAT_S` seconds: images done, images/s, ETA (for job logs)."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.started = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last < HEARTBEAT_S or self.done >= self.total:
            return
        self.last = now
        rate = self.done / (now - self.started) if now > self.started else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        logging.getLogger(PROGRESS_LOGGER).info(
            "%d/%d images (%.0f%%), %.1f images/s, ETA %s",
            self.done,
            self.total,
            100 * self.done / self.total,
            rate,
            _duration(eta),
        )


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _models_from(
    slots: Sequence[tuple[_Pending, int]], start: int
) -> Callable[[int], tuple[str, ...]]:
    """The models image `i` of a batch that begins at task `start` needs."""
    return lambda i: slots[start + i][0].job.models


def _batches(loader: Iterable[DecodedBatch]) -> Iterable[DecodedBatch]:
    try:
        yield from loader
    except RuntimeError as exc:
        if "DataLoader worker" not in str(exc):
            raise
        raise FeatstoreError(
            f"a decoding worker process died: {exc}\nHint: workers are started fresh (not "
            "forked), so a script that calls featstore.extract must keep its top-level code "
            'under `if __name__ == "__main__":`; or pass workers=0 / --workers 0.'
        ) from exc


def _worker_start_method() -> str:
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


def _drain(writes: list[Future[None]], *, keep: int) -> list[Future[None]]:
    """Surface writer errors now, and keep at most `keep` writes queued."""
    done = [f for f in writes if f.done()]
    for f in done:
        f.result()  # re-raises a StoreError from the writer thread
    writes = [f for f in writes if not f.done()]
    while len(writes) > keep:
        writes.pop(0).result()
    return writes
