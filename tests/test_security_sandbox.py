"""Finding 3: the render limits hold against the review's payloads and their families."""

from __future__ import annotations

import resource
import time

import pytest
from jinja2.exceptions import SecurityError

from polybot.prompts import PromptLibrary

S = "{% set s = 'x'*99999 %}"
PAYLOADS = [
    # the review's own
    '{% for i in "x"*99999 %}{% for m in messages %}{% endfor %}{% endfor %}',
    "{{ ''|center(10**9) }}",
    "{{ ('%'~999999999~'s') % 'a' }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s|replace('x','xx') %}{% endfor %}",
    "{{ 10**100**100 }}",
    # string and format widths
    "{{ ''|center(1000000000) }}", "{{ 'x'.center(10**9) }}", "{{ 'x'.ljust(10**9) }}", "{{ 'x'.zfill(10**9) }}",
    "{{ '{:>999999999}'.format('a') }}", "{{ '{:>{w}}'.format('a', w=999999999) }}",
    "{{ '%*s' % (999999999, 'a') }}", "{{ '%999999999s'|format('a') }}", "{{ '%.999999999f' % 1.5 }}",
    "{{ ('{0}'*25000).format('x'*99999) }}", "{{ ('%(a)s'*20000) % {'a': 'x'*99999} }}",
    # growth filters and methods
    S + "{{ s.replace('x', s) }}", "{{ ('a'*20).replace('', 'x'*99999) }}",
    "{% set s = '\n'*99999 %}{{ s|indent(999999) }}",
    "{% set s = 'a '*49999 %}{{ s|wordwrap(1, wrapstring='x'*99999) }}",
    S + "{{ ([s]*100000)|join }}", S + "{{ s.join([s]*100000) }}", "{{ (('x'*99999)|list)|join('y'*99999) }}",
    "{% set s = '\t'*99999 %}{{ s.expandtabs(999999) }}", S + "{{ s.translate({120: s}) }}",
    "{{ ('x'*99999)|urlize(target='y'*99999) }}", "{{ lipsum(1000000) }}",
    # doubling in a loop
    S + "{% set ns = namespace(s=s) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    S + "{% set ns = namespace(s=s) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}{% endfor %}",
    "{% set l = [1] %}{% for i in range(60) %}{% set _ = l.extend(l) %}{% endfor %}",
    S + "{% set l = [] %}{% for i in range(100000) %}{% set _ = l.append(s.upper()) %}{% endfor %}",
    # big integers
    "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}",
    "{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n ** 99 %}{% endfor %}",
    # output and work hidden in macros, repr and generators
    S + "{{ ([s]*100000)|string }}", S + "{{ [s]*100000 }}",
    "{% macro m() %}{% for i in range(99999) %}{{ big }}{% endfor %}{% endmacro %}{% set x = m() %}",
    "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    "{% for x in [1] recursive %}{{ loop('x'*99999) }}{% endfor %}",
    "{{ ('x'*99999)|batch(1)|list|length }}{{ ('x'*99999)|slice(999999)|list }}",
    "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    # single operations that are slow or huge on large input (`big` is 1,000,000 characters)
    "{{ ([[1]*100000]*100000)|sum(start=[])|length }}", "{{ markup|striptags }}", "{{ big|urlize }}",
    "{{ big|list|sort }}", "{{ big|sort }}", "{{ big.split()|length }}", "{{ big|replace(' ', '  ') }}",
]


@pytest.mark.parametrize("source", PAYLOADS, ids=range(len(PAYLOADS)))
def test_pathological_templates_stop_within_the_limits(source: str) -> None:
    library = PromptLibrary()
    library.set_files("Bot", {"system.md.j2": source})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises((SecurityError, RecursionError)):
        library.render("Bot", {"messages": [{"role": "user", "content": "hi"}] * 2000, "big": "a b " * 250000,
                               "markup": "<a>" * 333333})
    assert time.monotonic() - started < 2.5  # the deadline is 1 s; the margin is for a loaded machine
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"peak memory grew {grown_mb:.0f} MB"


def test_ordinary_templates_still_render() -> None:
    library = PromptLibrary()
    library.set_files("Bot", {"system.md.j2": (
        "{% for m in messages %}{{ loop.index }}:{{ m.content|upper }} {% endfor %}|{{ 'hi %s'|format('x') }}|"
        "{{ '{:>5}'.format('a') }}|{{ 'a,b'.split(',')|join('+') }}|{{ 'x' ~ 2 }}|{{ [1, 2] + [3] }}|"
        "{{ 2 ** 10 }}|{{ 'ab'|center(6) }}|{{ 'a b'|replace(' ', '_') }}|{{ lipsum(1, false, 3, 4)|length > 0 }}")})
    out = library.render("Bot", {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})
    assert out == "1:A 2:B |hi x|    a|a+b|x2|[1, 2, 3]|1024|  ab  |a_b|True"


def test_large_numbers_where_they_cannot_grow_anything_are_fine() -> None:
    library = PromptLibrary()
    library.set_files("Bot", {"system.md.j2": (
        "{{ '%d' % 5000000 }} {{ vars.get('x', 5000000) }} {{ none|default(5000000, true) }} {{ '{:d}'.format(5000000) }} "
        "{{ 'abc'.find('c', 0, 5000000) }} {{ 'abc'|truncate(5000000) }} {{ 5000000|filesizeformat }}")})
    assert library.render("Bot", {"vars": {}}) == "5000000 5000000 5000000 5000000 2 abc 5.0 MB"
