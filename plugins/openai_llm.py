"""The ``openai_llm`` plugin: an OpenAI-compatible chat model for strategies and other plugins.

It registers one :class:`aitrados.trading.llm.ChatClient` through ``register_llm_models``
under the name ``name`` (default ``openai``), configured by ``[plugins.openai_llm]``. Any server
of that API works: a local one (Ollama, llama.cpp, vLLM, LM Studio) or a hosted one. The key is
read from the environment variable named by ``api_key_env`` when a request is made; it never
appears in settings files, logs or on the bus.

Strategies ask it as ``host.llm("openai")`` (or ``llm_model = "openai"`` for ``llm_gated``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aitrados import hookimpl
from aitrados.trading.llm import ChatClient, LLMSettings

__all__ = ["OpenAILLMSettings"]


class OpenAILLMSettings(BaseModel):
    """``[plugins.openai_llm]``: where the chat server is and which model it runs."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("openai", min_length=1, description="name the model is registered under (host.llm(name))")
    base_url: str = Field("http://127.0.0.1:11434/v1", description="server URL up to /v1 (Ollama's default here)")
    model: str = Field("llama3.2", description="model name the server knows")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key (optional)")
    timeout: float = Field(10.0, gt=0, description="seconds for one request")
    temperature: float = Field(0.0, ge=0, description="sampling temperature; 0 for repeatable answers")
    max_tokens: int = Field(200, ge=1, description="reply length limit")


@hookimpl
def register_settings(register: Any) -> None:
    """Declare ``[plugins.openai_llm]``."""
    register(OpenAILLMSettings)


@hookimpl
def register_llm_models(register: Any) -> None:
    """Register the chat client configured by the plugin's settings."""
    cfg: OpenAILLMSettings = register.settings
    register(cfg.name, ChatClient(LLMSettings(**cfg.model_dump(exclude={"name"}))))
