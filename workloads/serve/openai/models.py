"""``GET /openai/v1/models``: the one model this server serves."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from openai.types import Model

from workloads.serve.openai.protocol import dump
from workloads.serve.state import ServingState


class ModelList:
    """Lists the served model as an OpenAI model card."""

    def __init__(self, state: ServingState) -> None:
        self.state = state

    async def list_models(self) -> JSONResponse:
        state = self.state
        card = Model(id=state.model_name, created=state.created, object="model", owned_by="tuneops")
        return JSONResponse({"object": "list", "data": [dump(card)]})
