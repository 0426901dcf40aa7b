"""The lifeline's periodic actor: the scheduler enqueues it every minute."""

from __future__ import annotations

from actors.periodic import periodic_actor
from actors.recovery import run_lifeline


@periodic_actor()
def lifeline_sweep() -> None:
    run_lifeline()
