"""Running the report's independent measurements through joblib: loky worker processes on this machine, or the
workers of a Dask distributed cluster (joblib's ``dask`` backend; ``pip install 'huffquant[cluster]'``).

Every measurement needs the same large inputs (the model, its statistics, the images and their FP32 logits):
the *context*. It is pickled once (with cloudpickle: a model class from a file or a script travels by value) and
goes to each worker once, not with every task: to loky workers as one file, which each worker reads on its first
task and keeps; to a Dask cluster by ``scatter`` with ``broadcast=True`` (joblib's dask backend replaces the
context argument of every task with its future), each worker unpickling it on its first task. With ``jobs=1``
the tasks run in this process on the context itself.

Every task runs with the same number of torch intra-op threads (``threads``, default 1) whatever the engine and
the number of jobs: torch's float sums depend on the thread count, so this keeps the numbers identical on any
engine, and with one worker process per core it keeps the processes from oversubscribing the cores. Dask
workers are best started with one thread each (``dask worker ADDRESS --nthreads 1 --nworkers N``): a task
sets torch's threads for its whole worker process.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from analysis.errors import AnalysisError

__all__ = ["Engine", "available_cores"]

#: contexts a worker process has unpacked (token -> context); one at a time
_LOADED: dict[str, Any] = {}


def available_cores() -> int:
    """The CPU cores this process may use (its affinity / cgroup quota, as joblib counts them)."""
    import joblib

    return max(1, int(joblib.cpu_count()))


@dataclass(frozen=True)
class _Packed:
    """The context pickled once: in a file (loky workers on this machine) or in memory (scattered to a cluster).
    A worker unpickles it on its first task and keeps it."""

    token: str
    path: str | None = None
    data: bytes | None = None


def _context(ref: Any) -> Any:
    if not isinstance(ref, _Packed):
        return ref
    if ref.token not in _LOADED:
        _LOADED.clear()  # the previous run's context: never needed again
        if ref.path is not None:
            with open(ref.path, "rb") as fh:
                _LOADED[ref.token] = pickle.load(fh)
        else:
            _LOADED[ref.token] = pickle.loads(ref.data)
    return _LOADED[ref.token]


def _unimportable(objects: Sequence[Any]) -> list[Any]:
    """The modules defining the classes of ``objects`` (and of their submodules, for torch modules) that a
    worker could not import by name: loaded from a file path (``--model path/to/file.py:FUNCTION``) or the
    main script. Their classes travel by value."""
    import importlib.machinery

    names = set()
    for obj in objects:
        parts = list(obj.modules()) if hasattr(obj, "modules") else [obj]
        names.update(type(o).__module__ for o in parts)
    out = []
    for name in sorted(names):
        mod = sys.modules.get(name)
        if mod is None or name == "__main__":
            continue
        top = name.partition(".")[0]
        if top in sys.builtin_module_names or importlib.machinery.PathFinder.find_spec(top) is not None:
            continue
        out.append(mod)
    return out


def _pack(context: Any, by_value: Sequence[Any]) -> bytes:
    import cloudpickle

    modules = _unimportable(by_value)
    for m in modules:
        cloudpickle.register_pickle_by_value(m)
    try:
        return cloudpickle.dumps(context, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise AnalysisError(f"the model or its inputs cannot be sent to worker processes ({exc}); "
                            f"run in this process (jobs=1, --jobs 1)") from exc
    finally:
        for m in modules:
            cloudpickle.unregister_pickle_by_value(m)


def _call(fn: Callable[[Any, Any], Any], ref: Any, task: Any, threads: int) -> Any:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(_context(ref), task)
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Engine:
    """Where the measurements run: ``cluster`` (a Dask scheduler address, or a ``distributed`` cluster object),
    else ``jobs`` loky processes (None: one per core; 1: this process); ``threads``: torch intra-op threads per
    task."""

    jobs: int | None = None
    cluster: Any = None
    threads: int = 1

    def __post_init__(self) -> None:
        if self.jobs is not None and self.jobs < 1:
            raise AnalysisError(f"the number of jobs must be >= 1, got {self.jobs}")
        if self.threads < 1:
            raise AnalysisError(f"the threads per task must be >= 1, got {self.threads}")

    def describe(self) -> str:
        if self.cluster is not None:
            return "Dask distributed cluster"
        jobs = self.jobs or available_cores()
        return "this process" if jobs == 1 else f"{jobs} loky worker processes"

    @contextmanager
    def session(self, context: Any, *, by_value: Sequence[Any] = ()) -> Iterator[Callable[..., list]]:
        """Ship ``context`` to the workers once; yields ``run(fn, tasks, desc=, progress=)``, which returns
        ``[fn(context, task) for task in tasks]`` (in task order), computed on the workers. ``by_value``: objects
        (e.g. the model) whose classes travel with them when the workers could not import them."""
        import joblib

        jobs = self.jobs or available_cores()
        if self.cluster is None and jobs == 1:
            yield lambda fn, tasks, **kw: self._map(fn, context, tasks, 1, **kw)
            return
        data = _pack(context, by_value)
        token = hashlib.sha256(data).hexdigest()[:16] + f"-{os.getpid()}-{time.monotonic_ns()}"
        if self.cluster is not None:
            try:
                import distributed
            except ImportError as exc:
                raise AnalysisError("running on a cluster needs Dask distributed: pip install 'huffquant[cluster]'"
                                    ) from exc
            try:
                client = distributed.Client(self.cluster, timeout="20s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise AnalysisError(f"cannot reach the Dask scheduler at {self.cluster}: {exc}") from exc
            ref = _Packed(token, data=data)
            del data
            with client, joblib.parallel_config(backend="dask", scatter=[ref]):
                yield lambda fn, tasks, **kw: self._map(fn, ref, tasks, -1, **kw)
            return
        with tempfile.TemporaryDirectory(prefix="huffquant-context-") as folder:
            path = os.path.join(folder, "context.pkl")
            with open(path, "wb") as fh:
                fh.write(data)
            del data
            ref = _Packed(token, path=path)
            with joblib.parallel_config(backend="loky"):
                yield lambda fn, tasks, **kw: self._map(fn, ref, tasks, jobs, **kw)

    def _map(self, fn: Callable[[Any, Any], Any], ref: Any, tasks: Sequence[Any], n_jobs: int, *, desc: str = "",
             progress: bool = False) -> list:
        import joblib
        from tqdm.auto import tqdm

        if not tasks:
            return []
        if n_jobs > 0:
            n_jobs = min(n_jobs, len(tasks))
        calls = (joblib.delayed(_call)(fn, ref, t, self.threads) for t in tasks)
        results = joblib.Parallel(n_jobs=n_jobs, return_as="generator", batch_size=1)(calls)
        return list(tqdm(results, total=len(tasks), desc=desc, unit="task", disable=not progress))
