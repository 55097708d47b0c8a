"""The example bots that show features: WeatherBot's tool calls an HTTP API (a local fake of
Open-Meteo here), through the real openai SDK and polybot's tool loop."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import serve_in_thread
from tests.fakes.tool_wire import Call, ToolFake, Turn
from tests.test_runtime import request, runtime

REPO = Path(__file__).resolve().parents[1]


def open_meteo() -> tuple[Starlette, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []

    async def search(r: Request) -> JSONResponse:
        seen.append(dict(r.query_params))
        return JSONResponse({"results": [{"name": "Paris", "country": "France", "latitude": 48.85,
                                          "longitude": 2.35}]})

    async def forecast(r: Request) -> JSONResponse:
        seen.append(dict(r.query_params))
        return JSONResponse({"current_weather": {"temperature": 18.4, "windspeed": 9.7, "weathercode": 3}})

    return Starlette(routes=[Route("/v1/search", search), Route("/v1/forecast", forecast)]), seen


async def test_weatherbot_looks_the_weather_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(REPO / "bots" / "WeatherBot", tmp_path / "bots" / "WeatherBot")
    shutil.copytree(REPO / "bots" / "_shared", tmp_path / "bots" / "_shared")
    model = ToolFake(Turn(calls=[Call("call_1", "get_weather", {"city": "Paris"})]),
                     Turn(text="It is 18.4 °C in Paris, France, with light wind."))
    weather, seen = open_meteo()
    with serve_in_thread(model.app) as model_url, serve_in_thread(weather) as weather_url:
        (tmp_path / "providers.toml").write_text(
            f'[openai]\nkind = "openai"\napi_base = "{model_url}/v1"\napi_key_env = "OPENAI_API_KEY"\n'
            'default_model = "gpt-4o-mini"\n')
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("WEATHER_API_BASE", weather_url)
        monkeypatch.setenv("GEOCODING_API_BASE", weather_url)
        rt = runtime(tmp_path, "WeatherBot")
        try:
            events = [e async for e in rt.respond(request(("user", "Weather in Paris?")))]
        finally:
            await rt.pool.aclose()
    assert "".join(e.text for e in events) == "It is 18.4 °C in Paris, France, with light wind."
    assert seen[0]["name"] == "Paris" and seen[1]["temperature_unit"] == "celsius"
    result = json.loads(model.bodies[1]["messages"][-1]["content"])
    assert result == {"place": "Paris, France", "temperature": 18.4, "unit": "celsius", "windspeed_kmh": 9.7,
                      "weathercode": 3}
    schema = model.bodies[0]["tools"][0]["function"]["parameters"]
    assert schema["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]
