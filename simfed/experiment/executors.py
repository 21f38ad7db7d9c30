"""Where the runs of a sweep execute: one ``concurrent.futures`` interface.

A sweep hands each run to an :class:`concurrent.futures.Executor`
(``submit(fn, *args) -> Future``; ``map`` comes with it) and never cares
which one. :func:`open_executor` chooses it from what the caller gave:

=====================================  ==========================================
``executor=`` a ``concurrent.futures``  used as is, never shut down by the sweep
``Executor`` (thread or process pool)
``executor=`` a ``dask.distributed``    its ``get_executor()``; the client is
``Client``                              left open
``scheduler="tcp://host:8786"``         a ``Client`` connected to that running
                                        cluster (closed at the end)
``scheduler="local:N"``                 a ``LocalCluster(n_workers=N,
                                        threads_per_worker=1, processes=True)``
                                        started and closed by the sweep
``workers=0``                           in this process, one run at a time
                                        (debugging; monkeypatching works)
otherwise (the default)                 a process pool of ``workers`` processes
                                        (default: one per CPU) started with an
                                        explicit ``spawn`` or ``forkserver``
                                        context
=====================================  ==========================================

The start method is chosen here, when the pool is made, from the sweep call
or the command line; nothing is set at import time (Mesa's ``batch_run``
called ``set_start_method("spawn", force=True)`` on import, which cost every
user of the library, parallel or not). Worker processes of the local pool
ignore SIGINT: Ctrl-C goes to the sweep, which cancels what is queued,
records what finished and stops the pool.

``dask`` is imported only when a scheduler or a Dask client is used.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import warnings
from collections.abc import Callable
from typing import Any

from simfed.errors import SimfedError, SimfedWarning

__all__ = [
    "ExecutorError",
    "LocalProcessExecutor",
    "SerialExecutor",
    "DaskExecutor",
    "SweepExecutor",
    "open_executor",
    "is_dask_client",
    "START_METHODS",
]

#: Start methods a local pool may use (``fork`` is unsafe with threads).
START_METHODS = ("spawn", "forkserver")


SCRIPT_GUARD_HINT = (
    "a sweep was started while a worker process was importing the main script: local worker "
    "processes import it, so start the sweep under `if __name__ == \"__main__\":` in a script "
    "(notebooks and `python -c` need nothing)"
)


class ExecutorError(SimfedError, RuntimeError):
    """An executor can't be made (bad ``--scheduler``, unreachable cluster, ...).

    ``usage`` is true for a mistake in the arguments (exit 2), false for an
    environment problem such as an unreachable scheduler (exit 1).
    """

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def _ignore_sigint() -> None:  # pragma: no cover - runs in the worker processes
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalProcessExecutor(cf.ProcessPoolExecutor):
    """A process pool with an explicit start method whose workers ignore Ctrl-C."""

    def __init__(self, max_workers: int, *, start_method: str = "spawn") -> None:
        if start_method not in START_METHODS:
            raise ExecutorError(
                f"start method {start_method!r} is not allowed (expected one of {', '.join(START_METHODS)})",
                usage=True,
            )
        if start_method not in multiprocessing.get_all_start_methods():
            raise ExecutorError(f"start method {start_method!r} is not available on this platform", usage=True)
        super().__init__(
            max_workers=max_workers,
            mp_context=multiprocessing.get_context(start_method),
            initializer=_ignore_sigint,
        )
        self.workers = max_workers
        self.start_method = start_method

    def terminate(self) -> None:
        """Cancel what is queued and kill the workers (after Ctrl-C)."""
        processes = dict(getattr(self, "_processes", None) or {})
        self.shutdown(wait=False, cancel_futures=True)
        for proc in processes.values():
            try:
                proc.terminate()
            except Exception:  # noqa: BLE001 - already gone
                pass
        for proc in processes.values():
            try:
                proc.join(timeout=5)
            except Exception:  # noqa: BLE001
                pass


class SerialExecutor(cf.Executor):
    """Runs each call in this process at ``submit`` time (``workers=0``)."""

    def __init__(self) -> None:
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: cf.Future = cf.Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller via the future
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


def is_dask_client(obj: Any) -> bool:
    """Whether ``obj`` is a ``dask.distributed.Client`` (without importing dask)."""
    mod = type(obj).__module__ or ""
    return mod.split(".")[0] == "distributed" and hasattr(obj, "get_executor") and hasattr(obj, "nthreads")


class DaskExecutor(cf.Executor):
    """A ``dask.distributed`` client seen as a ``concurrent.futures.Executor``.

    Futures are plain ``concurrent.futures.Future`` objects (through
    ``Client.get_executor``), tasks impure (``pure=False``: no hashing of
    the arguments, no deduplication). ``shutdown`` cancels what is pending;
    it closes the client (and the cluster) only when this object made them.
    """

    def __init__(self, client: Any, *, cluster: Any = None, owned: bool = False) -> None:
        self.client = client
        self.cluster = cluster
        self.owned = owned
        self._inner = client.get_executor(pure=False)

    def nthreads(self) -> dict[str, int]:
        """Threads of each worker of the cluster right now (empty if it can't be asked)."""
        try:
            return dict(self.client.nthreads())
        except Exception:  # noqa: BLE001 - a closing client; the sweep notices on submit
            return {}

    @property
    def workers(self) -> int:
        """Threads across the cluster's workers right now (at least 1)."""
        return max(1, sum(self.nthreads().values()))

    def check_workers(self) -> str:
        """``"W workers, T threads"``, warning when runs would share a GIL or wait.

        A simulation is CPU-bound Python: two runs on two threads of one
        worker process share its GIL and take as long as running them one
        after the other. Workers for a sweep should run ``--nthreads 1``
        (as many worker processes as cores, ``--nworkers N``).
        """
        threads = self.nthreads()
        self._check_versions()
        shared = sorted(addr for addr, n in threads.items() if n > 1)
        if not threads:
            warnings.warn(SimfedWarning(
                "the Dask cluster has no workers yet; the runs wait until workers join "
                "(dask worker SCHEDULER --nthreads 1 --nworkers N)"), stacklevel=3)
        elif shared:
            warnings.warn(SimfedWarning(
                f"{len(shared)} of {len(threads)} Dask workers run several threads (e.g. {shared[0]}: "
                f"{threads[shared[0]]}); simulations in one worker process share its GIL and do not run "
                "in parallel: start workers with --nthreads 1 --nworkers N"), stacklevel=3)
        return f"{len(threads)} workers, {sum(threads.values())} threads"

    def _check_versions(self) -> None:
        """Refuse workers that can't import simfed; warn about workers running another version."""
        from simfed import __version__

        try:
            versions = self.client.run(_worker_simfed_version)
        except ImportError as exc:
            raise ExecutorError(
                f"the Dask workers cannot import simfed ({type(exc).__name__}: {exc}); "
                f"install simfed {__version__} on every worker"
            ) from None
        except Exception as exc:  # noqa: BLE001 - a worker leaving meanwhile: the runs will say
            warnings.warn(SimfedWarning(f"could not ask the Dask workers for their simfed version "
                                        f"({type(exc).__name__}: {exc})"), stacklevel=4)
            return
        other = {addr: v for addr, v in versions.items() if v != __version__}
        if other:
            addr, version = sorted(other.items())[0]
            warnings.warn(SimfedWarning(
                f"{len(other)} of {len(versions)} Dask workers run another simfed version (e.g. {addr}: "
                f"{version}, here {__version__}); their runs may differ from this one's: install the "
                "same version everywhere"), stacklevel=4)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        return self._inner.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._inner.shutdown(wait=wait and not cancel_futures)
        if self.owned:
            try:
                self.client.close()
            finally:
                if self.cluster is not None:
                    self.cluster.close()


def _worker_simfed_version() -> str:  # pragma: no cover - runs on the Dask workers
    from simfed import __version__

    return __version__


def _dask():
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ExecutorError(
            f"--scheduler needs dask.distributed ({exc}); install it with pip install 'dask[distributed]'",
            usage=True,
        ) from None
    return distributed


def _local_cluster(spec: str, workers: int | None) -> DaskExecutor:
    _, _, n_text = spec.partition(":")
    if n_text:
        try:
            n = int(n_text)
        except ValueError:
            n = -1
        if n < 1:
            raise ExecutorError(
                f"--scheduler {spec}: {n_text!r} is not a number of workers (expected local:N, N >= 1)",
                usage=True,
            )
    else:
        n = workers or os.cpu_count() or 1
    distributed = _dask()
    import logging

    cluster = distributed.LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    try:
        client = distributed.Client(cluster)
    except BaseException:
        cluster.close()
        raise
    return DaskExecutor(client, cluster=cluster, owned=True)


def _remote_cluster(address: str) -> DaskExecutor:
    distributed = _dask()
    try:
        client = distributed.Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise ExecutorError(f"--scheduler {address}: cannot reach a Dask scheduler there ({exc})") from None
    except ValueError as exc:
        raise ExecutorError(
            f"--scheduler {address}: not a scheduler address ({exc}); expected e.g. tcp://host:8786 or local:4",
            usage=True,
        ) from None
    return DaskExecutor(client, owned=True)


class SweepExecutor:
    """The executor a sweep uses, how many runs it can take at once, and who closes it.

    A context manager; ``close(cancel=True)`` after Ctrl-C cancels what is
    queued (and kills the local pool's workers, which ignore SIGINT).
    """

    def __init__(self, executor: cf.Executor, *, slots: int, description: str, owned: bool) -> None:
        self.executor = executor
        self.slots = max(1, int(slots))
        self.description = description
        self.owned = owned

    def current_slots(self) -> int:
        """Runs the executor can take at once now: a Dask cluster's workers may come and go."""
        if isinstance(self.executor, DaskExecutor):
            self.slots = self.executor.workers
        return self.slots

    def __enter__(self) -> SweepExecutor:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(cancel=exc_type is not None)

    def close(self, *, cancel: bool = False) -> None:
        ex = self.executor
        if not self.owned:
            return
        if cancel and isinstance(ex, LocalProcessExecutor):
            ex.terminate()
        else:
            ex.shutdown(wait=not cancel, cancel_futures=cancel)


def open_executor(
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    executor: Any = None,
    start_method: str = "spawn",
    max_runs: int | None = None,
) -> SweepExecutor:
    """The executor for a sweep (see the module docstring for the choices).

    ``max_runs`` caps the size of a local pool (no idle processes for a
    sweep of three runs).
    """
    if executor is not None and scheduler is not None:
        raise ExecutorError("give either executor= or scheduler=, not both", usage=True)
    if workers is not None and workers < 0:
        raise ExecutorError(f"--workers: {workers} is too small (expected an integer >= 0)", usage=True)
    if executor is not None:
        if is_dask_client(executor):
            dx = DaskExecutor(executor)
            return SweepExecutor(dx, slots=dx.workers,
                                 description=f"Dask client {executor.scheduler.address}, {dx.check_workers()}",
                                 owned=False)
        if not isinstance(executor, cf.Executor) and not hasattr(executor, "submit"):
            raise ExecutorError(
                f"executor={executor!r} is neither a concurrent.futures.Executor nor a dask.distributed.Client",
                usage=True,
            )
        slots = getattr(executor, "_max_workers", None) or os.cpu_count() or 1
        return SweepExecutor(executor, slots=slots, description=type(executor).__name__, owned=False)
    if scheduler is not None:
        scheduler = scheduler.strip()
        if scheduler == "local" or scheduler.startswith("local:"):
            dx = _local_cluster(scheduler, workers)
            return SweepExecutor(dx, slots=dx.workers, description=f"Dask LocalCluster, {dx.workers} workers",
                                 owned=True)
        dx = _remote_cluster(scheduler)
        try:
            workers_text = dx.check_workers()
        except BaseException:
            dx.shutdown(cancel_futures=True)
            raise
        return SweepExecutor(dx, slots=dx.workers, description=f"Dask cluster at {scheduler}, {workers_text}",
                             owned=True)
    if workers == 0:
        return SweepExecutor(SerialExecutor(), slots=1, description="this process", owned=True)
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # A spawned worker is importing the user's script, which starts a sweep at import.
        raise ExecutorError(SCRIPT_GUARD_HINT, usage=True)
    n = workers or os.cpu_count() or 1
    if max_runs is not None:
        n = max(1, min(n, max_runs))
    pool = LocalProcessExecutor(n, start_method=start_method)
    return SweepExecutor(pool, slots=n, description=f"{n} local processes ({start_method})", owned=True)
