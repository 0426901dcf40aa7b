"""Benchmark 2, job pipeline throughput: a no-op job actor declared with
``actors.job_tracking.job_actor`` (so JobTracking claims, heartbeats and finishes its
``jobs`` row, and its body sends one progress report through the JobReporter) against
the anchor, a bare ``@dramatiq.actor`` no-op. Both run on the project's broker and
Redis, on queues of their own, through one in-process ``dramatiq.Worker`` with the same
thread count. A trial enqueues N messages and times enqueue-to-drained
(``broker.join`` then ``worker.join``); for ours the N ``jobs`` rows are inserted before
the clock starts and checked to be ``succeeded`` after it stops. Trials alternate
bare/ours; the median jobs/s of each and ours/bare (the goal is >= 0.6) are reported,
with the CPU (user + system) the process spent per job: on a shared machine a steadier
figure than the rates, which other processes' load pulls down unevenly.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import dramatiq

from bench.env import BenchEnv
from bench.report import median, table

QUEUE_OURS = "bench-jobs"
QUEUE_BARE = "bench-bare"
WORKER_THREADS = 8
WORKER_TIMEOUT_MS = 100
JOIN_INTERVAL_MS = 10
TRIAL_TIMEOUT_S = 120
GOAL = 0.6


@dataclass(frozen=True)
class PipelinePlan:
    """Messages per trial, trials per kind, and a small untimed warm-up batch."""

    jobs: int
    rounds: int
    warmup: int


FULL = PipelinePlan(jobs=1000, rounds=3, warmup=50)
QUICK = PipelinePlan(jobs=200, rounds=1, warmup=20)


@dataclass
class Trial:
    """One timed batch: how long enqueueing took, how long until all were done, and the
    CPU the process spent meanwhile."""

    kind: str
    jobs: int
    enqueue_s: float
    total_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.jobs / self.total_s

    @property
    def cpu_ms_per_job(self) -> float:
        return self.cpu_s / self.jobs * 1000


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) so far."""
    times = os.times()
    return times.user + times.system


@dataclass
class PipelineResult:
    """All trials of both kinds; ``bare`` is the anchor."""

    trials: list[Trial] = field(default_factory=list)

    def rates(self, kind: str) -> list[float]:
        return [t.rate for t in self.trials if t.kind == kind]

    def render(self) -> str:
        anchor = median(self.rates("bare"))
        rows = []
        for kind, label in (("bare", "bare @dramatiq.actor (anchor)"), ("ours", "job_actor")):
            trials = [t for t in self.trials if t.kind == kind]
            rate = median(self.rates(kind))
            rows.append(
                [
                    label,
                    str(trials[0].jobs),
                    str(len(trials)),
                    f"{median([t.enqueue_s / t.total_s for t in trials]) * 100:.0f}%",
                    " / ".join(f"{t.rate:.0f}" for t in trials),
                    f"{rate:.0f}",
                    f"{rate / anchor:.2f}x",
                    f"{median([t.cpu_ms_per_job for t in trials]):.2f}",
                ]
            )
        header = [
            "actor", "jobs", "trials", "enqueue", "jobs/s each", "jobs/s", "vs bare", "CPU ms/job",
        ]  # fmt: skip
        ratio = median(self.rates("ours")) / anchor
        verdict = "meets" if ratio >= GOAL else "is below"
        intro = (
            f"Job pipeline: in-process dramatiq.Worker, {WORKER_THREADS} threads, "
            "enqueue-to-drained (enqueue = share of the time spent sending)"
        )
        return (
            f"{intro}\n{table(header, rows)}\n"
            f"ours/bare = {ratio:.2f} ({verdict} the goal of {GOAL})"
        )


class Pipeline:
    """The two actors, the worker that runs them and the timed trials."""

    def __init__(self) -> None:
        from actors import broker
        from actors.job_context import current_job
        from actors.job_tracking import job_actor

        def bench_noop_job(job_id: str) -> None:
            current_job().report(progress=0.5, stage="working")

        def bench_noop_bare() -> None:
            return None

        from dramatiq.brokers.redis import RedisBroker

        assert isinstance(broker, RedisBroker), "the bench measures the Redis broker"
        self.broker = broker
        broker.declare_queue(QUEUE_OURS)
        broker.declare_queue(QUEUE_BARE)
        self.ours = job_actor(kind="noop", queue_name=QUEUE_OURS, actor_name="bench_noop_job")(
            bench_noop_job
        )
        self.bare = dramatiq.actor(
            queue_name=QUEUE_BARE, actor_name="bench_noop_bare", broker=broker
        )(bench_noop_bare)
        self.worker = dramatiq.Worker(
            broker,
            queues={QUEUE_OURS, QUEUE_BARE},
            worker_threads=WORKER_THREADS,
            worker_timeout=WORKER_TIMEOUT_MS,
        )

    def __enter__(self) -> Pipeline:
        self.worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        from actors import stores

        self.worker.stop()
        self.broker.close()
        stores.redis_client().close()
        stores.sessions().kw["bind"].dispose()

    def _drain(self, queue: str) -> None:
        self.broker.join(queue, interval=JOIN_INTERVAL_MS, timeout=TRIAL_TIMEOUT_S * 1000)
        self.worker.join()

    def run_bare(self, count: int) -> Trial:
        cpu, started = cpu_seconds(), time.perf_counter()
        for _ in range(count):
            self.bare.send()
        enqueued = time.perf_counter()
        self._drain(QUEUE_BARE)
        done = time.perf_counter()
        return Trial("bare", count, enqueued - started, done - started, cpu_seconds() - cpu)

    def run_ours(self, count: int) -> Trial:
        from actors.enqueue import enqueue_job

        job_ids = self._insert_jobs(count)
        cpu, started = cpu_seconds(), time.perf_counter()
        for job_id in job_ids:
            enqueue_job(self.ours, job_id, QUEUE_OURS)
        enqueued = time.perf_counter()
        self._drain(QUEUE_OURS)
        done = time.perf_counter()
        used = cpu_seconds() - cpu
        self._check_succeeded(job_ids)
        return Trial("ours", count, enqueued - started, done - started, used)

    @staticmethod
    def _insert_jobs(count: int) -> list[str]:
        from actors import stores
        from db.models import Job, JobStatus

        job_ids = [str(uuid.uuid4()) for _ in range(count)]
        with stores.sessions().begin() as session:
            session.add_all(
                Job(id=job_id, kind="noop", status=JobStatus.queued, queue=QUEUE_OURS, params={})
                for job_id in job_ids
            )
        return job_ids

    @staticmethod
    def _check_succeeded(job_ids: list[str]) -> None:
        from sqlalchemy import func, select

        from actors import stores
        from db.models import Job, JobStatus

        with stores.sessions()() as session:
            rows: Any = session.execute(
                select(Job.status, func.count()).where(Job.id.in_(job_ids)).group_by(Job.status)
            )
            counts = {str(status): n for status, n in rows}
        if counts != {JobStatus.succeeded.value: len(job_ids)}:
            raise RuntimeError(f"job_actor trial did not finish cleanly: {counts}")


def run_pipeline(env: BenchEnv, *, quick: bool) -> PipelineResult:
    """Warm up both actors, then alternate timed bare/ours trials."""
    plan = QUICK if quick else FULL
    result = PipelineResult()
    with Pipeline() as pipeline:
        pipeline.run_bare(plan.warmup)
        pipeline.run_ours(plan.warmup)
        for _ in range(plan.rounds):
            result.trials.append(pipeline.run_bare(plan.jobs))
            result.trials.append(pipeline.run_ours(plan.jobs))
    return result
