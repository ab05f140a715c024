"""Where work runs: `analyze_many` over many sources, on this machine ("local") or a Ray
cluster ("ray"). Both engines run the same task function (`tasks.run_task`) on the same tasks
(`tasks.plan_tasks`); an engine decides only where a task runs, so their rows are identical.

    local.py      the tasks one after another in this process
    ray.py        Ray tasks, resources from analyze's options (resources.py), retried on failure
    writer.py     the output table, rewritten atomically as rows arrive; resume
"""
from .many import analyze_many, source_entries, step_of
from .resources import task_resources
from .tasks import Task, plan_tasks, run_task

__all__ = ["analyze_many", "source_entries", "step_of", "task_resources", "Task", "plan_tasks",
           "run_task"]
