"""Benchmark 10, part "cores" (issue 9 item 6): does CPU-heavy image work inside one
worker process use every core, and how best? Two kinds of item, each a real job's
media call: an artist's image set (:func:`media.images.make_image_set` on a 12-megapixel
JPEG) and a video's analysis (:func:`media.analysis.analyze` on a generated 60 s 1080p
clip: probe, keyframes, loudness through ffmpeg, 4 widths x 2 formats). Each batch of
items is run six ways, items per second against the first (the anchor):

- one thread in this process, one item after another (anchor);
- 2 and 4 threads in this process (a ``ThreadPoolExecutor``): as far as Pillow, PyAV
  and OpenCV release the GIL, the threads overlap;
- a 2-process pool (``ProcessPoolExecutor``, fork), started and warmed before the clock;
- today's design: a child forked per item (:func:`media.isolation.run_isolated`, from
  the fork server a worker keeps warm, memory-capped as the actors cap it) from 2 and
  from 4 threads (a worker process has 4).

CPU is that of this process and every process below it (the pool's workers, the fork
server, the forked children, ffmpeg), so "cores busy" (CPU over wall) says how much of
the machine each way used. The ways take turns, in a rotated order each round, and the
figures are medians over the rounds.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.backlog import descendants, load_average
from bench.report import median, table

TICK_S = 1 / os.sysconf("SC_CLK_TCK")

#: An item: the function and its keyword arguments, as a job would call it.
Item = tuple[Callable[..., Any], dict[str, Any]]


def tree_cpu() -> float:
    """CPU seconds of this process (all threads), the children it reaped (and what they
    reaped), and every live process below it (with what those reaped)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    for pid, fields in descendants(os.getpid()).items():
        if pid != str(os.getpid()):
            total += sum(int(value) for value in fields[11:15]) * TICK_S
    return total


def call(item: Item) -> Any:
    """An item's work in the calling thread or process (module level: the pool pickles
    it by reference)."""
    function, kwargs = item
    return function(**kwargs)


@dataclass
class Way:
    """How a batch is run: ``start`` makes the executor (not clocked, warmed), ``run``
    runs every item with it."""

    name: str
    start: Callable[[list[Item]], Any]
    run: Callable[[Any, list[Item]], None]
    stop: Callable[[Any], None] = lambda _: None


def in_threads(count: int) -> Way:
    def start(items: list[Item]) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(count, thread_name_prefix="bench-media")

    def run(pool: Executor, items: list[Item]) -> None:
        list(pool.map(call, items))

    name = "1 thread in this process (anchor)" if count == 1 else f"{count} threads in this process"
    return Way(name, start, run, lambda pool: pool.shutdown())


def process_pool(count: int) -> Way:
    def start(items: list[Item]) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork"))
        # Every process up and warm (one real item each), as a worker would keep it.
        list(pool.map(call, items[:count]))
        return pool

    def run(pool: Executor, items: list[Item]) -> None:
        list(pool.map(call, items))

    return Way(f"{count}-process pool (fork)", start, run, lambda pool: pool.shutdown())


def forked_per_item(threads: int, memory_limit: int) -> Way:
    from media.isolation import run_isolated

    def isolated(item: Item) -> Any:
        function, kwargs = item
        return run_isolated(function, kwargs=kwargs, memory_limit=memory_limit)

    def start(items: list[Item]) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(threads, thread_name_prefix="bench-media")

    def run(pool: Executor, items: list[Item]) -> None:
        list(pool.map(isolated, items))

    return Way(
        f"a child forked per item (today), {threads} threads",
        start,
        run,
        lambda pool: pool.shutdown(),
    )


@dataclass
class Runs:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


@dataclass
class Workload:
    """A batch of one kind of item; ``items(n)`` gives the n-th run's batch (fresh
    output folders), ``clean`` removes what the runs wrote."""

    name: str
    items: Callable[[int], list[Item]]
    clean: Callable[[], None]
    size: int
    runs: dict[str, Runs] = field(default_factory=dict)


def image_sets(photos: list[Path], out: Path) -> Workload:
    from media.images import make_image_set

    def items(run: int) -> list[Item]:
        return [
            (make_image_set, {"source": str(photo), "out_dir": str(out / f"{run}-{n}")})
            for n, photo in enumerate(photos)
        ]

    return Workload(
        f"image sets: {len(photos)} 4000x3000 JPEGs -> 128..1024 x webp/jpg/avif",
        items,
        lambda: shutil.rmtree(out, ignore_errors=True),
        len(photos),
    )


def analyses(clips: list[Path], count: int, out: Path) -> Workload:
    from media.analysis import analyze
    from media.ffmpeg import ffmpeg_path

    ffmpeg = ffmpeg_path()

    def items(run: int) -> list[Item]:
        return [
            (analyze, {
                "path": str(clips[n % len(clips)]),
                "thumbnails_dir": str(out / f"{run}-{n}"),
                "ffmpeg_location": ffmpeg,
            })
            for n in range(count)
        ]  # fmt: skip

    return Workload(
        f"video analyses: {count} x a 60 s 1080p H.264 + AAC clip -> probe, quality, "
        "160..1280 x webp/jpg",
        items,
        lambda: shutil.rmtree(out, ignore_errors=True),
        count,
    )


def measure(workload: Workload, ways: list[Way], rounds: int) -> None:
    """Every way over the workload's batch, ``rounds`` times, in a rotated order."""
    runs = 0
    for round_ in range(rounds):
        turn = ways[round_ % len(ways) :] + ways[: round_ % len(ways)]
        for way in turn:
            executor = way.start(workload.items(runs))
            runs += 1
            items = workload.items(runs)
            runs += 1
            try:
                cpu, wall = tree_cpu(), time.perf_counter()
                way.run(executor, items)
                wall, cpu = time.perf_counter() - wall, tree_cpu() - cpu
            finally:
                way.stop(executor)
            workload.clean()
            result = workload.runs.setdefault(way.name, Runs())
            result.wall.append(wall)
            result.cpu.append(cpu)


def render(workload: Workload) -> str:
    rows = []
    anchor = next(iter(workload.runs.values()))
    anchor_rate = workload.size / median(anchor.wall)
    for name, result in workload.runs.items():
        wall, cpu = median(result.wall), median(result.cpu)
        rate = workload.size / wall
        rows.append(
            [
                name,
                f"{rate:.2f}",
                f"{rate / anchor_rate:.2f}",
                f"{wall:.2f}",
                f"{cpu / workload.size * 1000:.0f}",
                f"{cpu / wall:.2f}",
                f"{min(result.wall):.2f}-{max(result.wall):.2f}",
            ]
        )
    header = ["way", "items/s", "x anchor", "wall s", "CPU ms/item", "cores busy", "wall range"]
    return f"{workload.name}\n{table(header, rows)}"


def run_cores(photos: list[Path], clips: list[Path], work: Path, *, quick: bool) -> str:
    """Item 6's table: each workload run each way, in turns."""
    from db.settings import load_settings
    from media.analysis import analyze
    from media.download import download_video, prepare_downloads
    from media.egress import install_egress_guard
    from media.images import make_image_set
    from media.isolation import cool_down, warm_up

    rounds = 1 if quick else 3
    memory_limit = load_settings().download_memory_limit
    ways = [
        in_threads(1),
        in_threads(2),
        in_threads(4),
        process_pool(2),
        forked_per_item(2, memory_limit),
        forked_per_item(4, memory_limit),
    ]
    workloads = [
        image_sets(photos, work / "sets"),
        analyses(clips, len(photos), work / "thumbnails"),
    ]
    # The fork server a worker keeps (actors/warm_processes.py), with the two targets'
    # modules imported as a worker's first such job would have them imported.
    warm_up(
        download_video, install_egress_guard, make_image_set, analyze, prepare=prepare_downloads
    )
    load_before, started = load_average(), time.monotonic()
    try:
        for workload in workloads:
            call(workload.items(-1)[0])  # imports in this process, not counted
            workload.clean()
            measure(workload, ways, rounds)
    finally:
        cool_down()
    head = (
        f"Cores (issue 9 item 6): {os.cpu_count()} CPUs; {rounds} rounds, ways in turns "
        f"(medians); load before {load_before}, after {load_average()}; "
        f"{time.monotonic() - started:.0f} s"
    )
    return "\n\n".join([head, *(render(workload) for workload in workloads)])
