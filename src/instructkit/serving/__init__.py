"""`instructkit serve`: an OpenAI-compatible HTTP server for a tuned model, on FastAPI + uvicorn (the `serve` extra).

    schemas   the request / response bodies (pydantic)
    worker    the one thread that runs the model: waiting requests batched into one `generate` call
    app       the FastAPI app: endpoints, limits, API key, errors, server-sent events
    server    binding, uvicorn, graceful stop on SIGTERM / Ctrl-C

Answers come from `evaluation.generation.generate`, the code behind held-out exact match, `instructkit chat` and
`generate`: prompts through the model's chat template, answers cut at its end-of-turn token. docs/serving.md has the
endpoints, limits and measurements.
"""

from __future__ import annotations

from importlib.util import find_spec

from instructkit.errors import InstructkitError

EXTRA = ("fastapi", "uvicorn")


def check_installed() -> None:
    """Stop with the install command when the `serve` extra is missing (before a model is loaded)."""
    missing = [name for name in EXTRA if find_spec(name) is None]
    if missing:
        raise InstructkitError(f"instructkit serve needs {' and '.join(missing)}, which "
                               f"{'is' if len(missing) == 1 else 'are'} not installed.",
                               fix="pip install 'instructkit[serve]' (or 'instructkit[all]').")
