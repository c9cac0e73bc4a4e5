"""Celery's delivery, in process and under the test's control: at least once, in any order.

Tasks queued by the code under test (delay / apply_async) are collected instead of sent. The test
runs them when it wants, in order or shuffled, and may deliver one twice (a broker redelivering
after a lost ack). A task that asks to be retried goes back on the queue, as on a real broker.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from celery.app.task import Task


class Requeue(Exception):
    """A task asked to be retried: it goes back on the queue (Celery's eager mode would rerun it inline)."""


@dataclass
class Queued:
    task: Task
    args: tuple
    kwargs: dict
    retries: int = 0

    @property
    def name(self) -> str:
        return self.task.name.rsplit(".", 1)[-1]


class TaskQueue:
    def __init__(self, monkeypatch):
        self.pending: list[Queued] = []
        self.ran: list[Queued] = []
        self.retried = 0
        queue = self

        def apply_async(task, args=None, kwargs=None, **options):
            queue.pending.append(Queued(task, tuple(args or ()), dict(kwargs or {})))

        def retry(task, args=None, kwargs=None, exc=None, **options):
            raise Requeue(str(exc))

        monkeypatch.setattr(Task, "apply_async", apply_async)
        monkeypatch.setattr(Task, "retry", retry)

    def names(self) -> list[str]:
        return [q.name for q in self.pending]

    def run(
        self,
        *,
        rng: random.Random | None = None,
        duplicate_rate: float = 0.0,
        skip: tuple[str, ...] = (),
        max_steps: int = 100_000,
    ) -> int:
        """Run until the queue is empty (tasks named in `skip` are dropped, like an expired message)."""
        steps = 0
        while self.pending:
            steps += 1
            if steps > max_steps:
                raise AssertionError(f"the queue never drained: {self.names()[:20]}")
            index = rng.randrange(len(self.pending)) if rng else 0
            item = self.pending.pop(index)
            if item.name in skip:
                continue
            self._deliver(item)
            if rng and rng.random() < duplicate_rate:
                self._deliver(item)  # delivered again: the worker died before its ack
        return steps

    def _deliver(self, item: Queued) -> None:
        result = item.task.apply(
            args=item.args, kwargs=item.kwargs, retries=item.retries, throw=False
        )
        self.ran.append(item)
        if result.state == "FAILURE" and isinstance(result.result, Requeue):
            self.retried += 1
            self.pending.append(Queued(item.task, item.args, item.kwargs, item.retries + 1))
        elif result.state == "FAILURE":
            raise result.result
