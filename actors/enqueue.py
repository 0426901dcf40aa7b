"""Sends a job's message to the queue the job row names.

Dramatiq fixes an actor's queue when it is declared; a job may ask for another queue
(its priority), so we enqueue a copy of the actor's message with that ``queue_name``.
Every queue is declared on the broker up front, so workers consume all of them.
"""

from __future__ import annotations

import dramatiq


def job_message(actor: dramatiq.Actor, job_id: str, queue: str) -> dramatiq.Message:
    """The message of ``actor(job_id)`` on ``queue``, not yet enqueued."""
    return actor.message(job_id).copy(queue_name=queue)


def enqueue_job(actor: dramatiq.Actor, job_id: str, queue: str) -> dramatiq.Message:
    """Enqueue ``actor(job_id)`` on ``queue``."""
    return actor.broker.enqueue(job_message(actor, job_id, queue))


def job_actors() -> dict[str, dramatiq.Actor]:
    """Job kind -> the actor that runs jobs of that kind."""
    broker = dramatiq.get_broker()
    actors = (broker.get_actor(name) for name in broker.get_declared_actors())
    return {actor.options["job"]: actor for actor in actors if actor.options.get("job")}
