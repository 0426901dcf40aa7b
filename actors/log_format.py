"""LogFormat: a worker process logs in ``VIDFLEET_LOG_FORMAT``.

Dramatiq sets up each worker process's logging itself (a handler on the pipe its main
process reads, at the level of ``--verbose``) before it loads the broker; once the
process has booted, this hands that handler to :func:`db.logs.configure_logging`,
which gives it the JSON formatter when the settings ask for it.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import Middleware

from db.logs import configure_logging
from db.settings import get_settings


class LogFormat(Middleware):
    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        configure_logging(get_settings())
