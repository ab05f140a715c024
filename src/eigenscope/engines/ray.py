"""The Ray engine: every task is a Ray task with the resources analyze's options ask for
(`resources.task_resources`); rows come back as each task finishes.

A worker process that dies in the middle of a task (killed, out of memory, its node lost) is
retried by Ray, up to MAX_RETRIES times; its rows are taken from the attempt that finished, so
none is lost or duplicated. A task that still cannot finish gets rows of status "failed".
The sources are opened by the workers: their paths must be reachable from every node.
"""
from __future__ import annotations

import logging
from typing import Iterable, Iterator

from ..errors import ArgumentError, EigenscopeError
from .tasks import Task, failed_rows, label_rows, run_task

MAX_RETRIES = 3     # attempts after a worker or node failure (Ray's own default, made explicit)


def run_ray(tasks: Iterable[Task], *, address: str | None = None) -> Iterator[tuple[Task, object]]:
    """(task, its rows) for every task, in the order they finish on the cluster at `address`
    ("auto": the cluster this machine belongs to; None: a Ray instance started for this run,
    or the one this process is already connected to)."""
    ray = _import_ray()
    tasks = list(tasks)
    started = _connect(ray, address)
    pending: dict = {}
    try:
        if tasks:
            _check_fits(ray, tasks[0].resources)
        remote = ray.remote(run_task)
        for task in tasks:
            ref = remote.options(**task.resources, max_retries=MAX_RETRIES,
                                 retry_exceptions=False).remote(task)
            pending[ref] = task
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(ready[0])
            yield task, _result(ray, ready[0], task)
    finally:
        for ref in pending:       # an interrupted run leaves no work behind on the cluster
            ray.cancel(ref)
        if started:
            ray.shutdown()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise EigenscopeError("engine='ray' needs Ray: pip install 'eigenscope[ray]'") from None
    return ray


def _connect(ray, address) -> bool:
    """Connect (or start) unless this process is already connected; True when we did."""
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address not in (None, "auto") and address != current:
            raise ArgumentError(f"address={address!r}: this process is already connected to "
                                f"the Ray cluster at {current}")
        return False
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING,
                 include_dashboard=False if address is None else None)
    except Exception as e:  # ConnectionError, ValueError on a malformed address, ...
        from ..sources.base import error_line
        where = "a local Ray instance" if address is None else f"the Ray cluster at {address}"
        raise EigenscopeError(f"cannot connect to {where}: {error_line(e)}") from None
    return True


def _check_fits(ray, request: dict) -> None:
    """A request no node can meet would wait forever: say which option to change instead."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    for key, option, need in (("CPU", "workers", request["num_cpus"]),
                              ("memory", "max_memory", request["memory"]),
                              ("GPU", "device", request["num_gpus"])):
        have = max((n.get(key, 0) for n in nodes), default=0)
        if need and have < need:
            unit = " bytes" if key == "memory" else ""
            raise ArgumentError(f"{option}: each task asks for {need:g}{unit} {key}, but the "
                                f"largest node of the Ray cluster has {have:g}{unit}")


def _result(ray, ref, task: Task):
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as e:   # retries used up, cancelled, object lost
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return label_rows(task, failed_rows(task, f"{task.source}: Ray: {type(e).__name__}: "
                                                  f"{first[:200]}"))
