"""Templates are data-driven text, not code: no escape, no runaway render."""

from __future__ import annotations

import time

import pytest
from jinja2.exceptions import SecurityError, TemplateNotFound, UndefinedError

from polybot.prompts import PromptLibrary


def render(source: str, **context: object) -> str:
    library = PromptLibrary()
    library.set_files("Bot", {"system.md.j2": source})
    return library.render("Bot", context)


@pytest.mark.parametrize("source", [
    "{{ x.__class__.__mro__ }}",
    "{{ x.__init__.__globals__ }}",
    "{{ ''.__class__.__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
])
def test_python_internals_are_unreachable(source: str) -> None:
    with pytest.raises(SecurityError):
        render(source, x={"a": 1})


@pytest.mark.parametrize("source", [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 'x' * 1000000000 }}",
    "{{ [1] * 1000000000 }}",
    "{{ 2 ** 100000000 }}",
    "{% for i in range(50000) %}{{ 'y' * 99999 }}{% endfor %}",
])
def test_runaway_templates_stop_quickly(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(SecurityError):
        render(source)
    assert time.monotonic() - started < 3


def test_environment_and_files_are_not_in_the_context() -> None:
    for name in ("os", "environ", "open", "__import__", "import"):
        with pytest.raises(UndefinedError):  # not in the context, not a global
            render("{{ %s }}" % name)
    with pytest.raises(TemplateNotFound):  # the loader knows the project's templates only
        render('{% include "/etc/passwd" %}')


def test_normal_loops_and_repeats_still_work() -> None:
    assert render("{% for i in range(3) %}{{ i }}{% endfor %} {{ '-' * 5 }} {{ 2 ** 10 }}") == "012 ----- 1024"
