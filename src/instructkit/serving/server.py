"""Running the app: uvicorn on a socket bound here (so `--port 0` works and the real port is printed), until SIGTERM
or Ctrl-C, which stop it gracefully: no new connections, requests in flight answered (up to a timeout), the worker
joined, exit status 0 and no traceback."""

from __future__ import annotations

import signal
import socket
import sys

from instructkit.errors import InstructkitError
from instructkit.serving.app import Settings, create_app
from instructkit.serving.worker import Worker

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port (port 0: any free port)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as err:
        raise InstructkitError(f"cannot listen on {host}:{port} ({err.strerror or err}).",
                               fix="pick another --port (0 = any free one), or stop what uses this one.") from None
    sock.set_inheritable(True)
    return sock


def serve(model, tokenizer, settings: Settings, host: str = "127.0.0.1", port: int = 8000, max_batch_size: int = 16,
          max_waiting: int = 64, graceful_seconds: int = 10) -> None:
    """Serve until SIGTERM / Ctrl-C."""
    import uvicorn

    sock = bind(host, port)
    worker = Worker(model, tokenizer, max_batch_size=max_batch_size, max_waiting=max_waiting)
    app = create_app(worker, tokenizer, settings)
    bound_host, bound_port = sock.getsockname()[:2]
    if host not in LOOPBACK:
        print(f"warning: listening on {bound_host}, reachable from other machines"
              + ("" if settings.api_key else "; no API key is set (--api-key / INSTRUCTKIT_API_KEY), so anyone who "
                 "reaches it can use the model"), file=sys.stderr, flush=True)
    print(f"serving {settings.name} on http://{bound_host}:{bound_port}  (POST /v1/chat/completions, POST "
          f"/v1/completions, GET /v1/models, GET /health; up to {max_batch_size} requests per batch, "
          f"{max_waiting} waiting; SIGTERM or Ctrl-C stops)", flush=True)
    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=graceful_seconds, lifespan="on")
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it has shut down (for the default handlers: death by
    # SIGTERM, KeyboardInterrupt for SIGINT); with these no-ops in place the graceful stop ends in a plain return.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    load = worker.load()
    print(f"stopped: {load['answered']} requests answered in {load['batches']} batches "
          f"(largest {load['largest_batch']}), {load['failed']} failed", flush=True)
