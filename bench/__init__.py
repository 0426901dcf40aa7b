"""Benchmarks for vidfleet: ``make bench`` (``python -m bench``) measures the HTTP latency
of the real app under uvicorn and the throughput of the job pipeline, each figure printed
as a ratio to an anchor measured in the same run (``/healthz``, a bare Dramatiq actor), so
the numbers compare across machines. They are not tests and assert nothing about timings.
"""
