"""The ``APIRouter`` of the OpenAI routes; the server includes it under ``/openai/v1``.

Each route names the ``openai`` type its answer has, so ``/openapi.json`` documents the real
response bodies; the error answers and the event-stream form of the streamed answers are added
to the document in one place, ``workloads.serve.openapi``.
"""

from __future__ import annotations

from fastapi import APIRouter
from openai.types import Completion
from openai.types.chat import ChatCompletion

from workloads.serve.openai.chat import ChatCompletions
from workloads.serve.openai.completions import Completions
from workloads.serve.openai.models import ModelList
from workloads.serve.openai.protocol import ModelsResponse
from workloads.serve.state import ServingState


def build_router(state: ServingState) -> APIRouter:
    """``/models``, ``/chat/completions`` and ``/completions``, each served from ``state``."""
    router = APIRouter()
    router.add_api_route(
        "/models",
        ModelList(state).list_models,
        methods=["GET"],
        responses={200: {"model": ModelsResponse}},
    )
    router.add_api_route(
        "/chat/completions",
        ChatCompletions(state).chat_completions,
        methods=["POST"],
        responses={200: {"model": ChatCompletion}},
    )
    router.add_api_route(
        "/completions",
        Completions(state).completions,
        methods=["POST"],
        responses={200: {"model": Completion}},
    )
    return router
