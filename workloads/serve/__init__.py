"""The KServe model server: OpenAI-compatible and Open Inference Protocol in one process."""
