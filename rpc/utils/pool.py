"""Tasks in spawned worker processes, a bounded number in flight, and a clear error when a worker dies: the pool
of the CPU-bound stages (the pseudo masks' and the predictions' CRF, the scoring)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context


class WorkerDied(RuntimeError):
    """A worker process ended abnormally (killed, out of memory, crashed in native code)."""


def run_bounded(fn: Callable, tasks: Iterable[tuple[str, tuple]], workers: int, on_done: Callable[[str, object], None],
                initializer: Callable | None = None, initargs: tuple = (), what: str = "CRF",
                after: str = "finished masks are kept, a rerun does the rest") -> None:  # fmt: skip
    """``fn(*args)`` for each ``(label, args)`` of ``tasks``, ``on_done(label, result)`` as each finishes.

    ``workers > 1``: in that many spawned processes (``initializer(*initargs)`` in each), in completion order.
    ``tasks`` is consumed lazily, at most ``2 * workers`` in flight, so a generator that computes each task's
    input (a DeepLab forward, say) runs ahead of the workers by no more than that. A worker that dies raises
    :class:`WorkerDied` naming the labels in flight (one of them was in the dead process). ``workers <= 1``: in
    this process, in order, ``initializer`` run here first."""
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        for label, args in tasks:
            on_done(label, fn(*args))
        return
    pending = iter(tasks)
    running: dict = {}
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=initializer,
                             initargs=initargs) as pool:  # fmt: skip
        try:
            while True:
                for label, args in pending:
                    running[pool.submit(fn, *args)] = label
                    if len(running) >= 2 * workers:
                        break
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    on_done(running[future], future.result())  # a dead worker: BrokenProcessPool
                    del running[future]
        except BrokenProcessPool as exc:
            labels = ", ".join(sorted(running.values()))
            raise WorkerDied(f"a {what} worker process died (killed or out of memory?) while processing one of: "
                             f"{labels}; {after}") from exc  # fmt: skip


def chunked(items: Sequence, size: int) -> list[Sequence]:
    """``items`` cut into consecutive pieces of at most ``size``, in order."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def map_ordered(fn: Callable, tasks: Sequence[tuple], workers: int, on_done: Callable[[int], None] | None = None,
                what: str = "scoring") -> list:  # fmt: skip
    """``[fn(*args) for args in tasks]``, computed in ``workers`` processes (:func:`run_bounded`), returned in the
    order of ``tasks`` whatever order they finish in; ``on_done(i)`` after task ``i`` finishes (a progress bar)."""
    results: dict[int, object] = {}

    def done(label: str, result) -> None:
        results[int(label)] = result
        if on_done is not None:
            on_done(int(label))

    run_bounded(fn, ((str(i), args) for i, args in enumerate(tasks)), workers, done, what=what,
                after="nothing was written; a rerun starts again")  # fmt: skip
    return [results[i] for i in range(len(tasks))]
