"""Pure media functions: yt-dlp, FFmpeg/PyAV, file naming. Paths and options in,
dataclasses out, progress through a callback, cancellation through a callable.
Nothing here reads settings or talks to Redis or the database."""
