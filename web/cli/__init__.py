"""The ``vidfleet`` command line: one module per group of commands (see :mod:`web.cli.main`)."""
