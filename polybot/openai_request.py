"""The body of POST /v1/chat/completions, checked before anything reads it (SPEC §9).

Every malformed body is an `ApiError` 400 in OpenAI's error shape: `param` names the field the
way OpenAI does (`messages[0].tool_calls[1].function.arguments`), and the message says what was
expected and what was received (the value shortened). Nothing past `parse_request` meets a
message whose role is not a string, `tool_calls` that are not calls, or JSON nested without end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import JSONResponse

from polybot.errors import shown

#: Deeper JSON than this is refused (a request needs ~10 levels; a tool's schema a few more).
MAX_DEPTH = 64

#: Roles OpenAI's Chat Completions API takes.
ROLES = ("system", "developer", "user", "assistant", "tool", "function")

class ApiError(Exception):
    """An OpenAI error object with its HTTP status (and headers such as Retry-After)."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


def invalid(param: str, message: str) -> ApiError:
    """A 400 about `param`: `message` says what was expected and what was received."""
    return ApiError(400, f"{param}: {message}", param=param)


class ChatCompletionRequest(BaseModel):
    """The body of POST /v1/chat/completions. Other fields are kept: a bot's `[[controls]]`
    values arrive as extra fields; OpenAI options polybot does not use are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    temperature: float | None = Field(None, ge=0, le=2, allow_inf_nan=False)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    #: str | list[str]; checked by `_check_fields` (a union's errors would name its members).
    stop: Any = None
    n: int | None = Field(None, ge=1)
    tools: list[dict[str, Any]] | None = None
    #: str | dict; checked by `_check_fields`.
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    user: str | None = None


def parse_request(raw: bytes) -> ChatCompletionRequest:
    """The request in `raw`; ApiError(400) naming the first field that is wrong."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ApiError(400, f"We could not parse the JSON body of your request: it nests deeper than "
                       f"{MAX_DEPTH} levels.") from None
    except UnicodeDecodeError:
        raise ApiError(400, "We could not parse the JSON body of your request: it is not UTF-8 text.") from None
    except ValueError as exc:
        where = f" ({exc.msg} at line {exc.lineno} column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ApiError(400, f"We could not parse the JSON body of your request{where}: expected a JSON "
                       "object.") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"The request body must be a JSON object, but received {type(data).__name__} "
                       f"{shown(data)}.")
    _check_depth(data)
    try:
        body = ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    _check_fields(body)
    for i, message in enumerate(body.messages):
        check_message(i, message)
    return body


def _check_depth(data: object) -> None:
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ApiError(400, f"The request body nests deeper than {MAX_DEPTH} levels.")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))


def _validation_error(exc: ValidationError) -> ApiError:
    error = exc.errors()[0]
    param = _param(error["loc"])
    if error["type"] == "missing":
        return invalid(param, "is required")
    message = error["msg"]
    return invalid(param, f"{message[:1].lower()}{message[1:]}, but received {shown(error['input'])}")


def _param(loc: tuple[int | str, ...]) -> str:
    """OpenAI's way of naming a field: `messages[0].content`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _check_fields(body: ChatCompletionRequest) -> None:
    stop = body.stop
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise invalid("stop", f"expected a string or an array of strings, but received {shown(stop)}")
    choice = body.tool_choice
    if choice is not None and not isinstance(choice, str | dict):
        raise invalid("tool_choice", f"expected \"none\", \"auto\", \"required\" or an object naming a function, "
                                     f"but received {shown(choice)}")


def check_message(i: int, m: Mapping[str, Any]) -> None:
    """One message's shape: what the mapping to a Poe query relies on."""
    where = f"messages[{i}]"
    role = m.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise invalid(f"{where}.role", f"expected one of {', '.join(ROLES)}, but received {shown(role)}")
    _check_content(where, m.get("content"))
    for key in ("name", "tool_call_id"):
        if m.get(key) is not None and not isinstance(m[key], str):
            raise invalid(f"{where}.{key}", f"expected a string, but received {shown(m[key])}")
    calls = m.get("tool_calls")
    if calls is None:
        return
    if not isinstance(calls, list):
        raise invalid(f"{where}.tool_calls", f"expected an array of tool calls, but received {shown(calls)}")
    for j, call in enumerate(calls):
        _check_call(f"{where}.tool_calls[{j}]", call)


def _check_content(where: str, content: object) -> None:
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid(f"{where}.content", f"expected a string or an array of content parts, but received "
                                          f"{shown(content)}")
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid(at, f"expected a content part ({{\"type\": \"text\", \"text\": ...}}), but received "
                              f"{shown(part)}")
        if part["type"] in ("text", "refusal"):
            key = part["type"]
            if not isinstance(part.get(key), str):
                raise invalid(f"{at}.{key}", f"expected a string, but received {shown(part.get(key))}")


def _check_call(where: str, call: object) -> None:
    if not isinstance(call, dict):
        raise invalid(where, "expected a tool call ({\"id\": ..., \"type\": \"function\", \"function\": "
                             f"{{\"name\": ..., \"arguments\": ...}}}}), but received {shown(call)}")
    if call.get("id") is not None and not isinstance(call["id"], str):
        raise invalid(f"{where}.id", f"expected a string, but received {shown(call['id'])}")
    function = call.get("function")
    if not isinstance(function, dict):
        raise invalid(f"{where}.function", f"expected an object with name and arguments, but received "
                                           f"{shown(function)}")
    if not isinstance(function.get("name"), str):
        raise invalid(f"{where}.function.name", f"expected a string, but received {shown(function.get('name'))}")
    arguments = function.get("arguments")
    if arguments is not None and not isinstance(arguments, str):
        raise invalid(f"{where}.function.arguments", "expected a string (the arguments as JSON text), but "
                                                     f"received {shown(arguments)}")
