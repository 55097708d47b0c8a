"""Random bot.toml content: build always ends in success or located errors, never a traceback."""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from pathlib import Path

from polybot.cli import main

KEYS = ["provider", "model", "description", "version", "temperature", "max_tokens", "params", "vars",
        "provdier", "temprature", "poe", "fallback", "controls", "x"]
LOCATED = re.compile(r"^(bots/|providers\.toml|error: )\S[^:]*(:\d+)?: .+")


def build_once(lines: list[str], prompt: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bots" / "Fuzz").mkdir(parents=True)
        (root / "bots" / "Fuzz" / "bot.toml").write_text("\n".join(lines), encoding="utf-8", errors="replace")
        (root / "bots" / "Fuzz" / "system.md.j2").write_text(prompt)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(["build", "--project", str(root)])
        assert code in (0, 1), err.getvalue()
        if code == 1:
            for line in err.getvalue().splitlines():
                assert LOCATED.match(line), line
        assert "Traceback" not in err.getvalue()


def test_build_never_crashes() -> None:
    # Imported here, not at the top: hypothesis takes 0.7 s to import, paid only by the worker that runs this.
    from hypothesis import given, settings
    from hypothesis import strategies as st

    values = st.one_of(
        st.sampled_from(['"echo"', '"openai"', '"nope"', "0.5", "5", "-1", "0", "true", "[]", "{}", '"', "[1, 2",
                         '{ a = 1 }', '"""multi\nline"""', "1979-05-27", "nan", "inf"]),
        st.text(max_size=12).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),
        st.integers(-5, 5000).map(str),
        st.floats(allow_nan=False, allow_infinity=False, width=16).map(repr),
    )
    line = st.one_of(
        st.tuples(st.sampled_from(KEYS), values).map(lambda kv: f"{kv[0]} = {kv[1]}"),
        st.sampled_from(["[poe]", "[vars]", "[[fallback]]", "[[controls]]", "[params]", "[poe", "= 1", "#"]),
        st.text(max_size=20),
    )
    settings(max_examples=60, deadline=None)(given(
        lines=st.lists(line, max_size=8), prompt=st.sampled_from(["Hi {{ bot.name }}", "{{", "{% if %}", "ok"]),
    )(build_once))()
