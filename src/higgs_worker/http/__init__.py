"""The HTTP server: RunPod-compatible job routes, OpenAI-compatible speech, voices, health, metrics."""

from .app import create_app

__all__ = ["create_app"]
