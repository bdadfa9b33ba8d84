"""The OpenAI-compatible routes (``/openai/v1/...``), one module per concern.

``protocol`` holds the request models and the wire helpers, ``models``, ``chat`` and
``completions`` the handlers of each endpoint, and ``router`` mounts them on an ``APIRouter``
that the server includes on KServe's FastAPI app.
"""
