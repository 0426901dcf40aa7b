"""Benchmark 10, media work (issue 9's benchmark), five parts (``PARTS``, chosen with
``--media-parts``), each figure next to its ratio to an anchor measured in the same run:

- **Probe per file**: :func:`media.probe.probe_details` (PyAV, in this process) against
  an ``ffprobe -show_format -show_streams -of json`` subprocess (Debian's ``ffmpeg``
  package; the ``bench`` extra cannot bring it), on a generated 60 s 1080p H.264 + AAC
  clip; median wall and CPU ms (the subprocess's CPU is that of the children reaped).
- **Poster frame per video**: our path (:func:`media.keyframes.sample_keyframes`,
  :func:`media.thumbnails.choose_frame`, :func:`media.keyframes.full_picture` and one
  JPEG write), and the whole :func:`media.analysis.analyze`, against ``ffmpeg -i clip
  -ss 30 -frames:v 1`` (output seeking, which decodes everything up to 30 s: the
  issue's anchor) and ``ffmpeg -ss 30 -i clip ...`` (input seeking), on the clip with a
  keyframe every second and on one with a keyframe every 10 s.
- **Image sets per second**: generated 12-megapixel JPEGs made into artist image sets
  (:func:`media.images.make_image_set`: 4 widths x :data:`media.images.OUTPUTS`)
  through the real path: ``PUT /api/artists/{id}/image`` on uvicorn in a child
  process, ``artist_image`` jobs, the Procfile's worker line (two processes), files
  under the artists folder; clocked from the first PUT to the last job's
  ``finished_at``. Anchors on the same pictures, writing the same files: a naive
  Pillow loop (full decode, LANCZOS from full size for each width, one thread) and a
  pyvips loop (``thumbnail`` per width, shrink-on-load); also ``make_image_set`` in
  this process, one picture after another, and the three loops without AVIF.
- **The event loop under thumbnail work** (:mod:`bench.media_loop`, issue 9 item 7):
  ``GET /healthz`` latency while 8 thumbnails are made on the workers, or in a thread
  pool of the web, against the idle web.
- **Cores** (:mod:`bench.media_cores`, issue 9 item 6): image sets and video analyses
  per second in threads, a process pool, or a child forked per item, against one
  thread.

Other work may share the machine: the load average is printed before and after, and
CPU figures (steadier than wall time on a shared machine) stand next to wall times.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis

from bench.backlog import WorkerFleet, aware, fleet_cpu, load_average
from bench.env import BenchEnv, bench_env
from bench.http_latency import UvicornProcess, process_cpu
from bench.report import median, table

CLIP_SECONDS = 60
CLIP_SIZE = "1920x1080"
CLIP_RATE = 25
GOPS_S = (1, 10)
SEEK_S = 30
PHOTO_SIZE = (4000, 3000)
PHOTO_QUALITY = 90
PUT_CONCURRENCY = 4
STALL_TIMEOUT_S = 180.0
#: Where Debian's ffprobe is looked for: the variable, its package's path, then PATH.
FFPROBE_VARIABLE = "VIDFLEET_BENCH_FFPROBE"
GOAL_POSTER = 10.0
GOAL_NAIVE = 5.0
GOAL_VIPS = 1.0


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


@dataclass
class Timing:
    """Wall and CPU seconds of repeated runs of one thing (CPU: this process's, all its
    threads, plus the children it reaped)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def measure(self, run: Callable[[], object]) -> None:
        wall, cpu = time.perf_counter(), time.process_time() + children_cpu()
        run()
        self.cpu.append(time.process_time() + children_cpu() - cpu)
        self.wall.append(time.perf_counter() - wall)

    @property
    def wall_ms(self) -> float:
        return median(self.wall) * 1000

    @property
    def cpu_ms(self) -> float:
        return median(self.cpu) * 1000


def find_ffprobe() -> str | None:
    """Debian's ffprobe, if it is installed (``apt-get install ffmpeg``)."""
    for candidate in (os.environ.get(FFPROBE_VARIABLE), "/usr/bin/ffprobe"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("ffprobe")


def make_clip(path: Path, *, gop_s: int) -> Path:
    """A 60 s 1080p H.264 + AAC mp4 from FFmpeg's lavfi sources, a keyframe every
    ``gop_s`` seconds."""
    from media.ffmpeg import ffmpeg_path

    subprocess.run(
        [
            ffmpeg_path(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={CLIP_SIZE}:rate={CLIP_RATE}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={CLIP_SECONDS}",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-g", str(gop_s * CLIP_RATE), "-c:a", "aac",
            "-t", str(CLIP_SECONDS), "-movflags", "+faststart", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


# -- 1. probe -------------------------------------------------------------------------


def run_probe(clip: Path, runs: int) -> str:
    from media.probe import probe_details

    ffprobe = find_ffprobe()
    ours, anchor = Timing(), Timing()
    argv = [ffprobe or "", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(clip)]

    def probe_with_ffprobe() -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    probe_details(clip)  # imports, not counted
    if ffprobe:
        probe_with_ffprobe()
    for _ in range(runs):
        ours.measure(lambda: probe_details(clip))
        if ffprobe:
            anchor.measure(probe_with_ffprobe)
    header = ["probe of one file", "wall ms", "x anchor", "CPU ms", "x anchor"]
    ours_row = ["media.probe.probe_details (PyAV, in-process)", f"{ours.wall_ms:.1f}"]
    if ffprobe is None:
        rows = [
            ["ffprobe subprocess (anchor)", "not installed: apt-get install ffmpeg", "", "", ""],
            [*ours_row, "n/a", f"{ours.cpu_ms:.1f}", "n/a"],
        ]
    else:
        rows = [
            [f"ffprobe subprocess (anchor: {ffprobe})", f"{anchor.wall_ms:.1f}", "1.00",
             f"{anchor.cpu_ms:.1f}", "1.00"],
            [*ours_row, f"{ours.wall_ms / anchor.wall_ms:.3f}", f"{ours.cpu_ms:.1f}",
             f"{ours.cpu_ms / anchor.cpu_ms:.3f}"],
        ]  # fmt: skip
    return (
        f"Probe per file: {CLIP_SECONDS} s {CLIP_SIZE} H.264 + AAC, median of {runs} runs each\n"
        + table(header, rows)
    )


# -- 2. poster frame ------------------------------------------------------------------


def poster_frame(clip: Path, out: Path) -> None:
    """Our path to a poster frame: sample the keyframes, choose, decode the chosen one
    at full size, write one JPEG."""
    from media.keyframes import full_picture, sample_keyframes
    from media.thumbnails import THUMBNAIL_FORMATS, choose_frame

    chosen = choose_frame(sample_keyframes(clip).frames)
    full_picture(clip, chosen).save(out, **THUMBNAIL_FORMATS["jpg"])


def run_poster(clips: dict[int, Path], work: Path, runs: int) -> str:
    from media.analysis import analyze
    from media.ffmpeg import ffmpeg_path

    ffmpeg = ffmpeg_path()
    out = work / "poster.jpg"

    def ffmpeg_frame(clip: Path, *, input_seeking: bool) -> Callable[[], object]:
        seek = ["-ss", str(SEEK_S)]
        argv = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
        argv += [*seek, "-i", str(clip)] if input_seeking else ["-i", str(clip), *seek]
        argv += ["-frames:v", "1", str(out)]
        return lambda: subprocess.run(argv, check=True)

    rows = []
    for gop, clip in clips.items():
        ways: dict[str, Callable[[], object]] = {
            "ffmpeg -i clip -ss 30 (output seeking, anchor)": ffmpeg_frame(
                clip, input_seeking=False
            ),
            "ffmpeg -ss 30 -i clip (input seeking)": ffmpeg_frame(clip, input_seeking=True),
            "ours: sample + choose + full_picture + JPEG": partial(poster_frame, clip, out),
            "ours: whole media.analysis.analyze": partial(
                analyze, str(clip), str(work / "thumbs"), ffmpeg
            ),
        }
        timings = {name: Timing() for name in ways}
        for name in list(ways)[2:]:
            ways[name]()  # imports, not counted (the clip is in the page cache already)
        for n in range(runs):
            names = list(ways)
            for name in names[n % len(names) :] + names[: n % len(names)]:
                timings[name].measure(ways[name])
        anchor = next(iter(timings.values()))
        for name, timing in timings.items():
            rows.append(
                [
                    f"GOP {gop} s: {name}",
                    f"{timing.wall_ms:.0f}",
                    f"{anchor.wall_ms / timing.wall_ms:.1f}",
                    f"{timing.cpu_ms:.0f}",
                    f"{anchor.cpu_ms / timing.cpu_ms:.1f}",
                ]
            )
    return (
        f"Poster frame per video: {CLIP_SECONDS} s {CLIP_SIZE} H.264 + AAC, median of {runs} "
        f"runs each (turns rotate); goal >= {GOAL_POSTER:.0f}x faster than the anchor\n"
        + table(["way", "wall ms", "x faster", "CPU ms", "x less CPU"], rows)
    )


# -- 3. image sets --------------------------------------------------------------------


def make_photos(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 12-megapixel JPEGs that compress like photos (about 3.3 MB at
    quality 90): a smooth gradient with blurred shapes, drawn at a quarter of the size
    and enlarged, plus fine grain."""
    from PIL import Image, ImageDraw, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    width, height = PHOTO_SIZE
    grain = np.random.default_rng(0).integers(-10, 11, (height, width + 64, 1), dtype=np.int8)
    paths = []
    for n in range(count):
        rng = np.random.default_rng(n + 1)
        w, h = width // 4, height // 4
        y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
        mix = rng.uniform(0, 1, (3, 3)).astype(np.float32)
        channels = [40 + 170 * (m[0] * x + m[1] * y + m[2] * x * y) / m.sum() for m in mix]
        small = Image.fromarray(np.stack(channels, -1).astype(np.uint8))
        draw = ImageDraw.Draw(small)
        for _ in range(40):
            cx, cy, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(10, 150))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((cx - r, cy - r, cx + r, cy + r), fill=colour)
        big = small.filter(ImageFilter.GaussianBlur(1)).resize(PHOTO_SIZE, Image.Resampling.BICUBIC)
        shift = int(rng.integers(0, 64))
        pixels = np.asarray(big).astype(np.int16) + grain[:, shift : shift + width]
        path = folder / f"photo-{n:03d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=PHOTO_QUALITY)
        paths.append(path)
    return paths


def naive_pillow_set(source: Path, out: Path, outputs: Sequence[str]) -> None:
    """What a peer does: open, decode in full, LANCZOS from full size for each width,
    save each format (with our encoders' options, so the files are the same kind)."""
    from PIL import Image

    from media.images import ARTIST_WIDTHS, SAVE_OPTIONS

    out.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image.load()
        for width in ARTIST_WIDTHS:
            height = round(image.height * width / image.width)
            sized = image.resize((width, height), Image.Resampling.LANCZOS)
            for ext in outputs:
                sized.save(out / f"{width}.{ext}", **SAVE_OPTIONS[ext])  # type: ignore[arg-type]


def vips_set(source: Path, out: Path, outputs: Sequence[str]) -> None:
    """pyvips' ``thumbnail`` (shrink-on-load) per width, then each format with the
    options nearest ours: WebP Q 82 effort 4, JPEG Q 85 optimized progressive, AVIF Q 60
    at effort 1 (libvips passes 9 - effort to aom as its speed: 8, as ours)."""
    import pyvips

    from media.images import ARTIST_WIDTHS

    savers: dict[str, Callable[[Any, str], None]] = {
        "webp": lambda image, path: image.webpsave(path, Q=82, effort=4, keep="none"),
        "jpg": lambda image, path: image.jpegsave(
            path, Q=85, optimize_coding=True, interlace=True, keep="none"
        ),
        "avif": lambda image, path: image.heifsave(
            path, Q=60, compression="av1", effort=1, keep="none"
        ),
    }
    out.mkdir(parents=True, exist_ok=True)
    for width in ARTIST_WIDTHS:
        sized = pyvips.Image.thumbnail(str(source), width).copy_memory()
        for ext in outputs:
            savers[ext](sized, str(out / f"{width}.{ext}"))


def ours_in_process(source: Path, out: Path, outputs: Sequence[str]) -> None:
    from media.images import make_image_set

    make_image_set(str(source), str(out), outputs=tuple(outputs))


@dataclass
class LoopResult:
    """A loop over the pictures in this process: seconds and bytes written."""

    images: int
    wall_s: float
    cpu_s: float
    set_bytes: float  # mean bytes of one picture's set

    @property
    def rate(self) -> float:
        return self.images / self.wall_s


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def run_loop(
    make: Callable[[Path, Path, Sequence[str]], None],
    photos: list[Path],
    out: Path,
    outputs: Sequence[str],
) -> LoopResult:
    make(photos[0], out / "warm-up", outputs)  # imports, not counted
    shutil.rmtree(out / "warm-up")
    wall, cpu = time.perf_counter(), time.process_time()
    for n, photo in enumerate(photos):
        make(photo, out / str(n), outputs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    written = folder_bytes(out)
    shutil.rmtree(out)
    return LoopResult(len(photos), wall, cpu, written / len(photos))


def stage_costs(photos: list[Path], out: Path) -> dict[str, float]:
    """CPU s per picture of ``make_image_set``'s stages: decoding and resizing (no
    output), and each format on top of that."""
    from media.images import OUTPUTS

    costs: dict[str, float] = {}
    for label, outputs in [("decode + resizes", ()), *((ext, (ext,)) for ext in OUTPUTS)]:
        costs[label] = run_loop(ours_in_process, photos, out, outputs).cpu_s / len(photos)
    base = costs.pop("decode + resizes")
    return {"decode + resizes": base, **{label: cost - base for label, cost in costs.items()}}


@dataclass
class FleetResult:
    images: int
    total_s: float
    put_s: float
    fleet_cpu_s: float
    web_cpu_s: float
    breakdown: dict[str, float]
    set_bytes: float
    load_before: str
    load_after: str

    @property
    def rate(self) -> float:
        return self.images / self.total_s


async def put_images(base_url: str, token: str, uploads: list[tuple[int, Path]]) -> list[str]:
    """PUT each picture as its artist's image from ``PUT_CONCURRENCY`` clients; job ids."""
    ids: list[str] = [""] * len(uploads)
    remaining = iter(range(len(uploads)))
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:

        async def one_client() -> None:
            for n in remaining:
                artist_id, photo = uploads[n]
                response = await client.put(
                    f"/api/artists/{artist_id}/image",
                    content=photo.read_bytes(),
                    headers={"Content-Type": "image/jpeg"},
                )
                if response.status_code != 202:
                    raise RuntimeError(f"PUT answered {response.status_code}: {response.text}")
                ids[n] = response.json()["id"]

        await asyncio.gather(*(one_client() for _ in range(PUT_CONCURRENCY)))
    return ids


def run_fleet(env: BenchEnv, photos: list[Path]) -> FleetResult:
    from sqlalchemy import func, select

    from db.engine import make_engine, session_factory
    from db.library import artist_named
    from db.models import Job
    from db.settings import load_settings
    from media.images import ARTIST_WIDTHS, OUTPUTS

    engine = make_engine(env.database_url)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        artists = [int(artist_named(session, f"Artist {n:03d}").id) for n in range(len(photos))]
    client = redis.Redis.from_url(env.redis_url, decode_responses=True)
    web, fleet = UvicornProcess(env), WorkerFleet(env)
    try:
        web.start()
        root = fleet.start(client)
        load_before = load_average()
        cpu_before, web_before = fleet_cpu(root), process_cpu(web.pid) or 0.0
        first_put, started = datetime.now(UTC), time.monotonic()
        uploads = list(zip(artists, photos, strict=True))
        ids = asyncio.run(put_images(web.url, env.admin_token, uploads))
        put_s = time.monotonic() - started
        done, last_change = 0, time.monotonic()
        while done < len(ids):
            time.sleep(0.2)  # polling the database for the end of the run
            with sessions() as session:
                query = (
                    select(func.count())
                    .select_from(Job)
                    .where(Job.id.in_(ids), Job.status.in_(("succeeded", "failed", "cancelled")))
                )
                now = int(session.scalar(query) or 0)
            if now != done:
                done, last_change = now, time.monotonic()
            elif time.monotonic() - last_change > STALL_TIMEOUT_S:
                raise RuntimeError(f"stuck at {done}/{len(ids)} image jobs:\n{fleet.log_tail()}")
        cpu_after, web_cpu = fleet_cpu(root), (process_cpu(web.pid) or 0.0) - web_before
        load_after = load_average()
    finally:
        fleet.stop()
        web.stop()
    with sessions() as session:
        jobs = list(session.scalars(select(Job).where(Job.id.in_(ids))))
    engine.dispose()
    wrong = [f"{job.id}: {job.status} {job.error}" for job in jobs if job.status != "succeeded"]
    if wrong:
        raise RuntimeError(f"{len(wrong)} image jobs failed, e.g.:\n" + "\n".join(wrong[:5]))
    artists_dir = load_settings().artists_dir
    files = [path for path in artists_dir.rglob("*") if path.is_file()]
    expected = len(photos) * len(ARTIST_WIDTHS) * len(OUTPUTS)
    if len(files) != expected:
        raise RuntimeError(f"{len(files)} files under {artists_dir}, expected {expected}")
    breakdown: defaultdict[str, float] = defaultdict(float)
    for pid, (own, reaped, role) in cpu_after.items():
        own_before, reaped_before, _ = cpu_before.get(pid, (0.0, 0.0, role))
        breakdown[role] += own - own_before
        breakdown[f"{role}: reaped children"] += reaped - reaped_before
    last = max(aware(job.finished_at) for job in jobs)
    return FleetResult(
        images=len(photos),
        total_s=(last - first_put).total_seconds(),
        put_s=put_s,
        fleet_cpu_s=sum(breakdown.values()),
        web_cpu_s=web_cpu,
        breakdown=dict(breakdown),
        set_bytes=sum(path.stat().st_size for path in files) / len(photos),
        load_before=load_before,
        load_after=load_after,
    )


def run_image_sets(env: BenchEnv, photos: list[Path], subset: int) -> str:
    from media.images import OUTPUTS

    work = env.root / "image-sets"
    loops = {
        "naive Pillow loop, one thread (anchor a)": naive_pillow_set,
        "pyvips thumbnail loop (anchor b)": vips_set,
        "ours: make_image_set in this process, one after another": ours_in_process,
    }
    full = {name: run_loop(make, photos, work, OUTPUTS) for name, make in loops.items()}
    fleet = run_fleet(env, photos)
    plain = ("webp", "jpg")
    without_avif = {
        name: run_loop(make, photos[:subset], work, plain) for name, make in loops.items()
    }
    stages = stage_costs(photos[: max(2, subset // 4)], work)
    naive, vips = (full[name] for name in list(loops)[:2])
    naive_plain, vips_plain = (without_avif[name] for name in list(loops)[:2])

    def row(name: str, rate: float, cpu: float, set_bytes: float, a: float, b: float) -> list[str]:
        return [name, f"{rate:.2f}", f"{a:.2f}", f"{b:.2f}", f"{cpu * 1000:.0f}",
                f"{set_bytes / 1024:.0f}"]  # fmt: skip

    rows = [
        row(f"ours: PUT -> artist_image jobs -> worker line (x{len(photos)})", fleet.rate,
            (fleet.fleet_cpu_s + fleet.web_cpu_s) / fleet.images, fleet.set_bytes,
            fleet.rate / naive.rate, fleet.rate / vips.rate),
    ]  # fmt: skip
    for name, result in full.items():
        rows.append(
            row(f"{name} (x{result.images})", result.rate, result.cpu_s / result.images,
                result.set_bytes, result.rate / naive.rate, result.rate / vips.rate)
        )  # fmt: skip
    for name, result in without_avif.items():
        rows.append(
            row(f"no AVIF: {name.split(' (')[0]} (x{result.images})", result.rate,
                result.cpu_s / result.images, result.set_bytes,
                result.rate / naive_plain.rate, result.rate / vips_plain.rate)
        )  # fmt: skip
    to_naive, to_vips = fleet.rate / naive.rate, fleet.rate / vips.rate
    in_child = full["ours: make_image_set in this process, one after another"].cpu_s / len(photos)
    per_image = (fleet.fleet_cpu_s + fleet.web_cpu_s) / fleet.images
    roles = ", ".join(
        f"{role} {cpu / fleet.images * 1000:.0f}"
        for role, cpu in sorted(fleet.breakdown.items())
        if cpu > 0
    )
    lines = [
        f"Image sets per second: {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEGs (q{PHOTO_QUALITY}) -> "
        f"widths 128/256/512/1024 x {'/'.join(OUTPUTS)}; worker line: 2 processes x 4 "
        f"threads; {os.cpu_count()} CPUs; load before {fleet.load_before}, after "
        f"{fleet.load_after}",
        table(
            ["way", "sets/s", "x naive", "x pyvips", "CPU ms/set", "KiB/set"],
            rows,
        ),
        f"goals (ours through the worker line): >= {GOAL_NAIVE:.0f}x the naive loop: "
        f"{to_naive:.2f}x, {verdict(to_naive >= GOAL_NAIVE)}; >= {GOAL_VIPS:.1f}x the pyvips "
        f"loop: {to_vips:.2f}x, {verdict(to_vips >= GOAL_VIPS)} (the no-AVIF rows compare "
        "with the no-AVIF anchors)",
        f"where ours goes, CPU ms per set: {per_image * 1000:.0f} in all = "
        f"{in_child * 1000:.0f} make_image_set itself + {(per_image - in_child) * 1000:.0f} "
        f"job, process and upload overhead; by process: {roles}, web (uvicorn) "
        f"{fleet.web_cpu_s / fleet.images * 1000:.0f}; the PUTs took {fleet.put_s:.1f} s of "
        f"{fleet.total_s:.1f} s",
        "make_image_set's stages, CPU ms per set: "
        + ", ".join(f"{label} {cost * 1000:.0f}" for label, cost in stages.items()),
    ]
    return "\n".join(lines)


#: The parts of this benchmark, in the order they run (``--media-parts``).
PARTS = ("probe", "poster", "images", "loop", "cores")


def run_media(*, quick: bool = False, parts: Sequence[str] = PARTS) -> str:
    """The chosen parts' tables, in a world of their own (:func:`bench.env.bench_env`:
    the jobs other benchmarks leave queued would join the worker line's work)."""
    from bench.media_cores import run_cores
    from bench.media_loop import run_loop

    runs, poster_runs, photo_count = (5, 1, 8) if quick else (30, 7, 200)
    core_items = 4 if quick else 12
    started = time.monotonic()
    load_before = load_average()
    with bench_env() as env:
        work = env.root / "media"
        work.mkdir()
        gops = GOPS_S if {"poster", "cores"} & set(parts) else GOPS_S[:1]
        clips = {gop: make_clip(work / f"clip-gop{gop}.mp4", gop_s=gop) for gop in gops}
        wanted = photo_count if "images" in parts else core_items if "cores" in parts else 0
        photos = make_photos(env.root / "photos", wanted)
        tables = {
            "probe": lambda: run_probe(clips[GOPS_S[0]], runs),
            "poster": lambda: run_poster(clips, work, poster_runs),
            "images": lambda: run_image_sets(env, photos, subset=max(4, photo_count // 4)),
            "loop": lambda: run_loop(env, clips[GOPS_S[0]], quick=quick),
            "cores": lambda: run_cores(
                photos[:core_items], list(clips.values()), work / "cores", quick=quick
            ),
        }
        done = [tables[part]() for part in PARTS if part in parts]
    head = (
        f"Media: {os.cpu_count()} CPUs, load average before {load_before}, after "
        f"{load_average()}, {time.monotonic() - started:.0f} s"
    )
    return "\n\n".join([head, *done])
