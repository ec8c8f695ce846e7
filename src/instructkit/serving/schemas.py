"""The OpenAI request and response bodies `instructkit serve` speaks, as pydantic models (FastAPI validates requests
with them and documents them at /docs).

Requests are strict: a field of the wrong type is an error, not converted ("5" is not a number), and a field this
server does not implement (`tools`, `logprobs: true`, `n: 2`, ...) is refused by name rather than ignored. Fields
OpenAI clients send with their neutral value (`n: 1`, `presence_penalty: 0`, `user`) are accepted.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ROLES = ("system", "developer", "user", "assistant")  # OpenAI's "developer" is the system message of newer models
MAX_STOP_STRINGS = 4  # as OpenAI


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(Strict):
    type: Literal["text"]
    text: str


class Message(Strict):
    role: str
    content: str | list[TextPart]

    @field_validator("role", mode="before")
    @classmethod
    def known_role(cls, role):
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        return role

    @field_validator("content", mode="before")
    @classmethod
    def text_or_parts(cls, content):
        if not isinstance(content, (str, list)):
            raise ValueError("must be a string or a list of {\"type\": \"text\", \"text\": ...} parts")
        return content

    def as_turn(self) -> dict:
        """{role, content} as training data holds it: text parts joined, "developer" as "system"."""
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class StreamOptions(Strict):
    include_usage: bool = True  # usage comes with the last chunk either way


class Sampling(Strict):
    """The fields both endpoints share."""

    model: str | None = None  # one model per server: any name is answered by it (the answer names it)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    user: str | None = None  # an end-user id, for the client's records

    @field_validator("stop", mode="before")
    @classmethod
    def stop_strings(cls, stop):
        if stop is None or isinstance(stop, str):
            stop = [] if stop is None else [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise ValueError("must be a non-empty string or a list of non-empty strings")
        if len(stop) > MAX_STOP_STRINGS:
            raise ValueError(f"holds {len(stop)} strings; at most {MAX_STOP_STRINGS}")
        return stop

    @field_validator("n")
    @classmethod
    def one_answer(cls, n):
        if n != 1:
            raise ValueError(f"is {n}: this server gives one answer per request (n=1); send {n} requests")
        return n

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def no_penalty(cls, value):
        if value != 0:
            raise ValueError("is not supported by this server (only 0)")
        return value


class ChatCompletionRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # OpenAI's newer name for max_tokens
    logprobs: bool | None = None

    no_logprobs = field_validator("logprobs")(lambda cls, value: _unsupported(value))


class CompletionRequest(Sampling):
    prompt: str | list[str]
    logprobs: bool | int | None = None

    @field_validator("prompt", mode="before")
    @classmethod
    def one_prompt(cls, prompt):
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ValueError("must be one string (a list of several prompts is several requests here)")
        return prompt

    no_logprobs = field_validator("logprobs")(lambda cls, value: _unsupported(value))


def _unsupported(value):
    if value:
        raise ValueError("is not supported by this server")
    return value


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "instructkit"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
