"""Benchmark 10, part "cores" (issue 9 item 6): does CPU-heavy image work inside one
worker process use every core, and how best? Two kinds of item, each a real job's
media call: an artist's image set (:func:`media.images.make_image_set` on a 12-megapixel
JPEG) and a video's analysis (:func:`media.analysis.analyze` on a generated 60 s 1080p
clip: probe, keyframes, loudness through ffmpeg, 4 widths x 2 formats). Each batch of
items is run seven ways, items per second against the first (the anchor):

- one thread in this process, one item after another (anchor);
- 2 and 4 threads in this process (a ``ThreadPoolExecutor``): as far as Pillow, PyAV
  and OpenCV release the GIL, the threads overlap;
- a 2-process pool (``ProcessPoolExecutor``, fork), started and warmed before the clock;
- today's design: a child forked per item (:func:`media.isolation.run_isolated`, from
  the fork server a worker keeps warm, with yt-dlp imported and prepared;
  memory-capped as the actors cap it) from 2 and from 4 threads (a worker process has
  4);
- the same from a fork server that has imported only the item's module, 4 threads.

CPU is that of this process and every process below it (the pool's workers, the fork
server, the forked children, ffmpeg), so "cores busy" (CPU over wall) says how much of
the machine each way used. The ways take turns, in a rotated order each round. Other
work on a shared machine takes cores from the parallel ways first, so each trial also
records the CPU the rest of the machine used meanwhile (``/proc/stat`` less ours); the
figures are medians of the quiet trials (the rest below :data:`QUIET_CORES`), and
rounds go on until every way has three, within :data:`BUDGET_S` per workload.
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
#: A trial is quiet when the rest of the machine used less than this many cores
#: meanwhile; the figures are the medians of the quiet trials.
QUIET_CORES = 0.2
#: Seconds one workload may go on for, waiting for quiet trials.
BUDGET_S = 15 * 60.0

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


def machine_cpu() -> float:
    """CPU seconds every process of the machine has used, summed over its CPUs."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, stat.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) * TICK_S


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


def forked_per_item(threads: int, memory_limit: int, *, lean: bool = False) -> Way:
    """A child per item from the fork server: today's, which has yt-dlp imported and its
    downloads prepared as a worker's has; or (``lean``) one with only the item's module
    imported."""
    from media.download import download_video, prepare_downloads
    from media.egress import install_egress_guard
    from media.isolation import cool_down, run_isolated, warm_up

    def isolated(item: Item) -> Any:
        function, kwargs = item
        return run_isolated(function, kwargs=kwargs, memory_limit=memory_limit)

    def worker_server() -> None:
        warm_up(download_video, install_egress_guard, prepare=prepare_downloads)

    def start(items: list[Item]) -> ThreadPoolExecutor:
        if lean:
            cool_down()
            warm_up(items[0][0])
        isolated(items[0])  # the server up, its imports done, before the clock
        return ThreadPoolExecutor(threads, thread_name_prefix="bench-media")

    def run(pool: Executor, items: list[Item]) -> None:
        list(pool.map(isolated, items))

    def stop(pool: Executor) -> None:
        pool.shutdown()
        if lean:
            cool_down()
            worker_server()

    worker_server()
    server = "a server without yt-dlp" if lean else "the worker's server (today)"
    return Way(f"fork per item from {server}, {threads} threads", start, run, stop)


@dataclass
class Runs:
    """One way's trials: wall and CPU seconds, and the CPU seconds other processes of
    the machine used meanwhile."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)

    def quiet(self) -> list[int]:
        """The trials during which the rest of the machine used less than QUIET_CORES."""
        return [
            n
            for n, (w, o) in enumerate(zip(self.wall, self.others, strict=True))
            if o / w < QUIET_CORES
        ]


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


def measure(workload: Workload, ways: list[Way], rounds: int, budget_s: float) -> None:
    """Every way over the workload's batch, in a rotated order each round: ``rounds``
    rounds, and more while a way has fewer than ``rounds`` quiet trials, until
    ``budget_s`` has passed."""
    deadline, runs, round_ = time.monotonic() + budget_s, 0, 0
    while True:
        turn = ways[round_ % len(ways) :] + ways[: round_ % len(ways)]
        for way in turn:
            executor = way.start(workload.items(runs))
            items = workload.items(runs + 1)
            runs += 2
            try:
                cpu, machine, wall = tree_cpu(), machine_cpu(), time.perf_counter()
                way.run(executor, items)
                wall, cpu = time.perf_counter() - wall, tree_cpu() - cpu
                machine = machine_cpu() - machine
            finally:
                way.stop(executor)
            workload.clean()
            result = workload.runs.setdefault(way.name, Runs())
            result.wall.append(wall)
            result.cpu.append(cpu)
            result.others.append(max(0.0, machine - cpu))
        round_ += 1
        quiet = min(len(result.quiet()) for result in workload.runs.values())
        if round_ >= rounds and (quiet >= rounds or time.monotonic() > deadline):
            return


def render(workload: Workload) -> str:
    """Medians over each way's quiet trials (over all of them, marked ``*``, when none
    was quiet)."""
    rows, anchor_rate = [], 0.0
    for name, result in workload.runs.items():
        chosen = result.quiet() or list(range(len(result.wall)))
        wall = median([result.wall[n] for n in chosen])
        cpu = median([result.cpu[n] for n in chosen])
        others = median([result.others[n] / result.wall[n] for n in chosen])
        rate = workload.size / wall
        anchor_rate = anchor_rate or rate
        rows.append(
            [
                name,
                f"{rate:.2f}",
                f"{rate / anchor_rate:.2f}",
                f"{wall:.2f}",
                f"{cpu / workload.size * 1000:.0f}",
                f"{cpu / wall:.2f}",
                f"{others:.2f}",
                f"{len(result.quiet())}/{len(result.wall)}" + ("" if result.quiet() else "*"),
            ]
        )
    header = [
        "way", "items/s", "x anchor", "wall s", "CPU ms/item", "cores busy", "others' cores",
        "quiet/all trials",
    ]  # fmt: skip
    return f"{workload.name}\n{table(header, rows)}"


def run_cores(photos: list[Path], clips: list[Path], work: Path, *, quick: bool) -> str:
    """Item 6's table: each workload run each way, in turns."""
    from db.settings import load_settings
    from media.isolation import cool_down

    rounds, budget_s = (1, 0.0) if quick else (3, BUDGET_S)
    memory_limit = load_settings().download_memory_limit
    ways = [
        in_threads(1),
        in_threads(2),
        in_threads(4),
        process_pool(2),
        forked_per_item(2, memory_limit),
        forked_per_item(4, memory_limit),
        forked_per_item(4, memory_limit, lean=True),
    ]
    workloads = [
        image_sets(photos, work / "sets"),
        analyses(clips, len(photos), work / "thumbnails"),
    ]
    load_before, started = load_average(), time.monotonic()
    try:
        for workload in workloads:
            call(workload.items(-1)[0])  # imports in this process, not counted
            workload.clean()
            measure(workload, ways, rounds, budget_s)
    finally:
        cool_down()
    head = (
        f"Cores (issue 9 item 6): {os.cpu_count()} CPUs; ways in turns, at least {rounds} "
        f"rounds, medians of the quiet trials (others below {QUIET_CORES} cores); load "
        f"before {load_before}, after {load_average()}; {time.monotonic() - started:.0f} s"
    )
    return "\n\n".join([head, *(render(workload) for workload in workloads)])
