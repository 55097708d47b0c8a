"""WeatherBot's tool: current weather from Open-Meteo (free, no key).

WEATHER_API_BASE and GEOCODING_API_BASE point it elsewhere (the tests use a local fake).
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

import httpx


async def get_weather(
    city: Annotated[str, "City name, optionally with country, e.g. 'Paris, France'"],
    unit: Annotated[Literal["celsius", "fahrenheit"], "Temperature unit"] = "celsius",
) -> dict[str, object]:
    """Current temperature, wind speed and weather code for a city."""
    geo = os.environ.get("GEOCODING_API_BASE", "https://geocoding-api.open-meteo.com")
    api = os.environ.get("WEATHER_API_BASE", "https://api.open-meteo.com")
    async with httpx.AsyncClient(timeout=10) as client:
        found = (await client.get(f"{geo}/v1/search", params={"name": city, "count": 1})).json()
        if not found.get("results"):
            return {"error": f"no place called {city!r}"}
        place = found["results"][0]
        weather = (await client.get(f"{api}/v1/forecast", params={
            "latitude": place["latitude"], "longitude": place["longitude"], "current_weather": "true",
            "temperature_unit": unit})).json()["current_weather"]
    return {"place": f"{place['name']}, {place.get('country', '')}".strip(", "), "temperature": weather["temperature"],
            "unit": unit, "windspeed_kmh": weather["windspeed"], "weathercode": weather["weathercode"]}
