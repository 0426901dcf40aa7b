"""The Starlette app: HTTP API, file streams, the WebSocket progress hub, the page."""
