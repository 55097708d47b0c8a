"""`polybot sync --api-bots` against a fake of Poe's Bots REST API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from polybot.cli import main
from tests.fakes.poe_bots_api import FakeBotsApi
from tests.fakes.server import serve_in_thread

POE_KEY = "poe-api-key-never-printed-42"
ENDPOINT_KEY = "pk-endpoint-key-never-printed-7"

PUBLISHED = '''provider = "echo"
description = "Answers in haiku"

[poe]
kind = "api"
base_url = "https://bots.example.com"
allow_attachments = true

[poe.pricing]
prompt = 0.000001
completion = "0.000004"

[[poe.pricing.tiers]]
min_prompt_tokens = 200000
prompt = "0.000002"
completion = 0.000008

[[controls]]
control = "toggle_switch"
label = "Brief"
parameter_name = "brief"
default_value = true
'''


@pytest.fixture
def poe(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBotsApi]:
    fake = FakeBotsApi(POE_KEY)
    with serve_in_thread(fake.app) as url:
        fake.base_url = url
        monkeypatch.setenv("POLYBOT_POE_API_URL", url)
        monkeypatch.setenv("POE_API_KEY", POE_KEY)
        monkeypatch.setenv("POLYBOT_API_KEY", ENDPOINT_KEY)
        yield fake


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name, toml in {"Haiku": PUBLISHED, "Server": 'provider = "echo"\n',
                       "Plain": 'provider = "echo"\n\n[poe]\nkind = "api"\n\n[poe.pricing]\nprompt = "0.1"\n'
                                'completion = "0.2"\n'}.items():
        (tmp_path / "bots" / name).mkdir(parents=True)
        (tmp_path / "bots" / name / "bot.toml").write_text(toml)
        (tmp_path / "bots" / name / "system.md.j2").write_text("Be brief.")
    assert main(["build", "--project", str(tmp_path)]) == 0
    return tmp_path


def sync(project: Path, *args: str) -> int:
    return main(["sync", "--api-bots", *args, "--project", str(project)])


def test_creates_each_api_bot_with_its_settings(poe: FakeBotsApi, project: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert sync(project, "--url", "https://api.example.org/") == 0
    assert sorted(poe.bots) == ["Haiku", "Plain"]  # the server bot is not published
    haiku = poe.bots["Haiku"]
    assert haiku["description"] == "Answers in haiku"
    settings = haiku["api_bot_settings"]
    assert settings["model_name"] == "Haiku"
    assert settings["base_url"] == "https://api.example.org/v1"  # --url wins over [poe] base_url
    assert (settings["input_modalities"], settings["output_modalities"]) == (["text", "image"], ["text"])
    assert settings["pricing"] == {"prompt": "0.000001", "completion": "0.000004", "tiers": [
        {"min_prompt_tokens": 200000, "prompt": "0.000002", "completion": "0.000008"}]}
    assert settings["param_definitions"] == [{"param_name": "brief"}]
    control = haiku["parameter_controls"]["sections"][0]["controls"][0]
    assert (control["control"], control["parameter_name"]) == ("toggle_switch", "brief")
    assert poe.bots["Plain"]["api_bot_settings"]["input_modalities"] == ["text"]
    assert poe.endpoint_keys == {"Haiku": ENDPOINT_KEY, "Plain": ENDPOINT_KEY}
    out = capsys.readouterr()
    assert "created Haiku" in out.out and "created Plain" in out.out
    assert POE_KEY not in out.out + out.err and ENDPOINT_KEY not in out.out + out.err


def test_a_second_run_changes_nothing(poe: FakeBotsApi, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sync(project, "--url", "https://api.example.org") == 0
    writes = len(poe.writes())
    capsys.readouterr()
    assert sync(project, "--url", "https://api.example.org") == 0
    assert len(poe.writes()) == writes
    assert capsys.readouterr().out.splitlines() == ["Haiku: unchanged", "Plain: unchanged"]


def test_a_change_is_sent_as_an_update(poe: FakeBotsApi, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert sync(project, "Haiku") == 0  # [poe] base_url
    assert poe.bots["Haiku"]["api_bot_settings"]["base_url"] == "https://bots.example.com/v1"
    toml = project / "bots" / "Haiku" / "bot.toml"
    toml.write_text(toml.read_text().replace('completion = "0.000004"', 'completion = "0.000005"'))
    assert main(["build", "--project", str(project)]) == 0
    capsys.readouterr()
    assert sync(project, "Haiku") == 0
    last = poe.writes()[-1]
    assert (last.method, last.path) == ("PATCH", "/bots/Haiku")
    assert last.json["api_bot_settings"]["pricing"]["completion"] == "0.000005"
    assert "description" not in last.json  # only what changed
    assert poe.bots["Haiku"]["api_bot_settings"]["pricing"]["completion"] == "0.000005"
    assert "api_bot_settings.pricing.completion: '0.000004' -> '0.000005'" in capsys.readouterr().out


def test_dry_run_prints_the_diff_and_sends_nothing(poe: FakeBotsApi, project: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert sync(project, "Plain", "--url", "https://a.example", "--dry-run") == 0
    assert poe.writes() == []
    out = capsys.readouterr().out
    assert "Plain: create" in out and "api_bot_settings.base_url: (unset) -> 'https://a.example/v1'" in out
    assert sync(project, "Plain", "--url", "https://a.example") == 0
    capsys.readouterr()
    assert sync(project, "Plain", "--url", "https://b.example", "--dry-run") == 0
    assert len(poe.writes()) == 1
    assert capsys.readouterr().out.splitlines() == [
        "Plain: would update", "  api_bot_settings.base_url: 'https://a.example/v1' -> 'https://b.example/v1'"]


def test_send_key_resends_only_the_key(poe: FakeBotsApi, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sync(project, "Plain", "--url", "https://a.example") == 0
    monkeypatch.setenv("POLYBOT_API_KEY", "pk-rotated")
    assert sync(project, "Plain", "--url", "https://a.example") == 0
    assert poe.endpoint_keys["Plain"] == ENDPOINT_KEY  # not comparable, so not sent unasked
    assert sync(project, "Plain", "--url", "https://a.example", "--send-key") == 0
    assert poe.endpoint_keys["Plain"] == "pk-rotated"
    assert poe.writes()[-1].json == {"api_bot_settings": {"api_key": "pk-rotated"}}


def test_problems_are_reported_per_bot(poe: FakeBotsApi, project: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert sync(project, "Plain") == 1
    assert "Plain: no public URL for Poe to call: pass --url" in capsys.readouterr().err
    assert sync(project, "Server", "Hiaku") == 1
    err = capsys.readouterr().err
    assert "no bot named 'Hiaku' (did you mean 'Haiku'?)" in err and 'Server: not an API bot' in err
    monkeypatch.delenv("POLYBOT_API_KEY")
    assert sync(project, "Haiku") == 1
    assert "POLYBOT_API_KEY is not set" in capsys.readouterr().err
    monkeypatch.setenv("POE_API_KEY", "wrong")
    monkeypatch.setenv("POLYBOT_API_KEY", ENDPOINT_KEY)
    assert sync(project, "Haiku") == 1
    err = capsys.readouterr().err
    assert "Haiku: Poe rejected POE_API_KEY (HTTP 401)" in err and "wrong" not in err
    monkeypatch.delenv("POE_API_KEY")
    assert sync(project) == 1
    assert "POE_API_KEY is not set" in capsys.readouterr().err
    assert poe.writes() == []


def test_plain_sync_leaves_api_bots_alone(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Without --api-bots, only server bots are synced (here: Server, whose access key is unset).
    assert main(["sync", "--project", str(project)]) == 1
    err = capsys.readouterr().err
    assert "POE_ACCESS_KEY_SERVER" in err and "HAIKU" not in err and "PLAIN" not in err
