"""The ``APIRouter`` of the OpenAI routes; the server includes it under ``/openai/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from workloads.serve.openai.chat import ChatCompletions
from workloads.serve.openai.completions import Completions
from workloads.serve.openai.models import ModelList
from workloads.serve.state import ServingState


def build_router(state: ServingState) -> APIRouter:
    """``/models``, ``/chat/completions`` and ``/completions``, each served from ``state``."""
    router = APIRouter()
    router.add_api_route("/models", ModelList(state).list_models, methods=["GET"])
    router.add_api_route(
        "/chat/completions", ChatCompletions(state).chat_completions, methods=["POST"]
    )
    router.add_api_route("/completions", Completions(state).completions, methods=["POST"])
    return router
