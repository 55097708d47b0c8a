"""Bounds on one template render: time, work, and the size of everything it makes.

Jinja's sandbox stops templates reaching Python internals; it does not stop a one-line template
from looping for minutes or asking for gigabytes (`''|center(10**9)`, `'%999999999s' % 'a'`,
doubling a string in a loop, `10**100**100`). polybot's environment routes every loop iteration,
call, operator, filter, concatenation and output through the checks here, so a render stops with a
SecurityError within its limits, and a render thread that outlives its caller stops on its own.
"""

from __future__ import annotations

import functools
import math
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.utils import pass_context
from jinja2.visitor import NodeTransformer

#: Limits on one render.
MAX_RENDER_SECONDS = 1.0
MAX_PROMPT_CHARS = 1_000_000  # the prompt, and any one string a template makes
MAX_TOTAL_CHARS = 20_000_000  # everything a render makes, all together
MAX_STEPS = 1_000_000  # loop iterations, calls, operators, filters and outputs, all together
MAX_ITEMS = 200_000  # elements of a list, dict or set a template makes or grows
MAX_LOOP_ITEMS = 100_000  # range() elements, all calls together
MAX_REPEAT = 100_000  # "x" * n and [..] * n
MAX_EXPONENT = 100
MAX_INT_BITS = 10_000  # about 3000 decimal digits

SIZED = (str, bytes, list, tuple)


class Budget(threading.local):
    """What the render running on this thread has left. Inactive outside a render."""

    active = False
    deadline = math.inf
    steps = 0
    chars = 0
    range_left = MAX_LOOP_ITEMS

    def start(self) -> None:
        self.active = True
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.steps = 0
        self.chars = 0
        self.range_left = MAX_LOOP_ITEMS

    def stop(self) -> None:
        self.active = False

    def step(self) -> None:
        if not self.active:
            return
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise SecurityError(f"the template does more than {MAX_STEPS} steps (loops, calls, outputs)")
        if time.monotonic() > self.deadline:
            raise SecurityError(f"rendering took longer than {MAX_RENDER_SECONDS:g}s")

    def made(self, size: int) -> None:
        """Account for a new value of `size` characters (or items)."""
        if size > MAX_PROMPT_CHARS:
            raise SecurityError(f"the template makes a value of more than {MAX_PROMPT_CHARS} characters")
        if self.active:
            self.chars += size
            if self.chars > MAX_TOTAL_CHARS:
                raise SecurityError(f"the template makes more than {MAX_TOTAL_CHARS} characters in all")


budget = Budget()


def size_of(value: Any, limit: int = MAX_PROMPT_CHARS) -> int:
    """About len(str(value)), without building it; stops counting once past `limit`."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 1
    if not isinstance(value, list | tuple | set | frozenset | dict):
        return 16
    total = 0
    seen: set[int] = set()
    stack: list[Any] = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, list | tuple | set | frozenset | dict):
            if id(item) in seen:
                total += 5
                continue
            seen.add(id(item))
            total += 2
            stack.extend(item.items() if isinstance(item, dict) else item)
        else:
            total += size_of(item) + 2
    return total


def check_size(value: Any, what: str = "value") -> None:
    if size_of(value) > MAX_PROMPT_CHARS:
        raise SecurityError(f"the template makes a {what} of more than {MAX_PROMPT_CHARS} characters")


def check_numbers(args: Iterable[Any]) -> None:
    """Widths, counts and sizes passed to string operations stay within what a prompt can hold."""
    for arg in args:
        if isinstance(arg, int | float) and not isinstance(arg, bool) and abs(arg) > MAX_PROMPT_CHARS:
            raise SecurityError(f"the number {arg!r} is too large for a string operation in a template")


def account(result: Any) -> Any:
    """Charge a new value to the budget; iterators are counted as they are consumed."""
    if isinstance(result, str | bytes):
        budget.made(len(result))
    elif isinstance(result, list | tuple | dict | set):
        if len(result) > MAX_ITEMS:
            raise SecurityError(f"the template makes a collection of more than {MAX_ITEMS} items")
        budget.made(len(result))
    elif isinstance(result, Iterator) and not isinstance(result, range):
        return counted(result)
    return result


def counted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        budget.step()
        yield item


# --- the checks, per operation ------------------------------------------------------------------

_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?")


def check_percent(template: str, values: Any) -> None:
    """`template % values`: no huge width or precision, no huge result."""
    fields = _PERCENT.findall(template)
    for width, precision in fields:
        for number in (width, precision):
            if number.isdigit() and int(number) > MAX_PROMPT_CHARS:
                raise SecurityError(f"the format width {number} is too large for a template")
    items = values if isinstance(values, tuple) else tuple(values.values()) if isinstance(values, dict) \
        else (values,)
    if any("*" in field for field in fields):  # `%*s`: the width comes from the values
        check_numbers(items)
    _check_formatted(template, len(fields), items)


def _check_formatted(template: str, fields: int, values: Iterable[Any]) -> None:
    """Each of `fields` placeholders may repeat the largest value (`%(a)s%(a)s`, `{0}{0}`)."""
    largest = max((size_of(v) for v in values), default=0)
    if len(template) + fields * largest > MAX_PROMPT_CHARS:
        raise SecurityError(f"formatting makes a string of more than {MAX_PROMPT_CHARS} characters")


def check_format(template: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """`template.format(...)`: no huge width or precision, no huge result."""
    fields = 0
    nested = False
    for _, field, spec, _ in string.Formatter().parse(template):
        fields += field is not None
        nested = nested or "{" in (spec or "")
        for number in re.findall(r"\d+", spec or ""):
            if int(number) > MAX_PROMPT_CHARS:
                raise SecurityError(f"the format width {number} is too large for a template")
    if nested:  # `{:>{w}}`: the width comes from the arguments
        check_numbers((*args, *kwargs.values()))
    _check_formatted(template, fields, (*args, *kwargs.values()))


def replaced_size(text: str | bytes, old: Any, new: Any, count: Any = None) -> int:
    if not isinstance(old, str | bytes) or not isinstance(new, str | bytes):
        return len(text)
    hits = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def joined(separator: Any, items: Any) -> list[Any]:
    """`items` as a list (counted), after checking `separator.join(items)` stays bounded."""
    listed = list(counted(items)) if not isinstance(items, list | tuple) else list(items)
    sep = size_of(separator) if separator is not None else 0
    total = sep * len(listed)
    for item in listed:
        total += size_of(item)
        if total > MAX_PROMPT_CHARS:
            break
    if total > MAX_PROMPT_CHARS:
        raise SecurityError(f"joining makes a string of more than {MAX_PROMPT_CHARS} characters")
    return listed


def check_method(owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Checks before calling a method of a str, bytes or container; returns the args to call with."""
    if isinstance(owner, str | bytes):
        if name in ("center", "ljust", "rjust", "zfill"):
            check_numbers((*args, *kwargs.values()))
        elif name == "replace" and len(args) >= 2:
            if replaced_size(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count")) \
                    > MAX_PROMPT_CHARS:
                raise SecurityError(f"replace() makes a string of more than {MAX_PROMPT_CHARS} characters")
        elif name == "expandtabs":
            tab = args[0] if args else kwargs.get("tabsize", 8)
            tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
            if isinstance(tab, int) and len(owner) + tabs * tab > MAX_PROMPT_CHARS:
                raise SecurityError(f"expandtabs() makes a string of more than {MAX_PROMPT_CHARS} characters")
        elif name == "join" and args:
            return (joined(owner, args[0]), *args[1:])
        elif name == "translate" and args and isinstance(args[0], dict):
            longest = max((size_of(v) for v in args[0].values()), default=1)
            if len(owner) * longest > MAX_PROMPT_CHARS:
                raise SecurityError(f"translate() makes a string of more than {MAX_PROMPT_CHARS} characters")
        elif name in ("format", "format_map") and isinstance(owner, str):
            check_format(owner, args if name == "format" else (),
                         kwargs if name == "format" else dict(args[0]) if args and isinstance(args[0], dict)
                         else {})
    elif isinstance(owner, list | dict | set) and name in ("extend", "update", "union", "__iadd__", "__ior__"):
        added = sum(len(a) if hasattr(a, "__len__") else 0 for a in args)
        if len(owner) + added > MAX_ITEMS:
            raise SecurityError(f"the template grows a collection past {MAX_ITEMS} items")
    return args


def check_binop(operator: str, left: Any, right: Any) -> None:
    """`left <operator> right` stays small: repeats, big integers, concatenation, % formats."""
    if operator == "**" and isinstance(right, int | float) and not isinstance(right, bool):
        if abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right!r} is too large for a template")
        if isinstance(left, int) and isinstance(right, int) and right > 0 and \
                left.bit_length() * right > MAX_INT_BITS:
            raise SecurityError(f"{left.bit_length()}-bit number ** {right} is too large for a template")
    elif operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, SIZED) and isinstance(n, int) and len(seq) * n > max(MAX_REPEAT, len(seq)):
                raise SecurityError(f"repeating a sequence {n} times is too large for a template")
        if isinstance(left, int) and isinstance(right, int) and \
                left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError("the product is too large a number for a template")
    elif operator == "+":
        if isinstance(left, SIZED) and isinstance(right, SIZED):
            limit = MAX_PROMPT_CHARS if isinstance(left, str | bytes) else MAX_ITEMS
            if len(left) + len(right) > limit:
                raise SecurityError(f"concatenating makes a value of more than {limit} characters or items")
    elif operator == "%" and isinstance(left, str):
        check_percent(left, right)


# --- filters ----------------------------------------------------------------------------------------


def _check_indent(s: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if isinstance(s, str) and len(s) + (s.count("\n") + 1) * pad > MAX_PROMPT_CHARS:
        raise SecurityError(f"indent makes a string of more than {MAX_PROMPT_CHARS} characters")


def _check_replace(s: Any, old: Any = "", new: Any = "", count: Any = None) -> None:
    if isinstance(s, str) and replaced_size(s, old, new, count) > MAX_PROMPT_CHARS:
        raise SecurityError(f"replace makes a string of more than {MAX_PROMPT_CHARS} characters")


def _check_wordwrap(s: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None,
                    *args: Any, **kwargs: Any) -> None:
    wrap = size_of(wrapstring if wrapstring is not None else kwargs.get("wrapstring", "\n"))
    if isinstance(s, str) and isinstance(width, int) and \
            len(s) + (len(s) // max(width, 1) + 1) * wrap > MAX_PROMPT_CHARS:
        raise SecurityError(f"wordwrap makes a string of more than {MAX_PROMPT_CHARS} characters")


def _check_format(value: Any, *args: Any, **kwargs: Any) -> None:
    if isinstance(value, str):
        check_percent(value, args or kwargs)


def _check_items(value: Any, *args: Any, **kwargs: Any) -> None:
    """Filters that copy, sort or regroup every element: at most MAX_ITEMS of them."""
    if isinstance(value, str | bytes | list | tuple | dict | set) and len(value) > MAX_ITEMS:
        raise SecurityError(f"the template works on more than {MAX_ITEMS} items at once")


def _check_slice(value: Any, slices: Any = 1, *args: Any, **kwargs: Any) -> None:
    _check_items(value)
    if isinstance(slices, int) and slices > MAX_ITEMS:
        raise SecurityError(f"slice makes more than {MAX_ITEMS} lists")


def _check_sum(value: Any, attribute: Any = None, start: Any = 0) -> None:
    """Summing sequences concatenates them: the total stays within MAX_ITEMS."""
    _check_items(value)
    if isinstance(start, SIZED) and isinstance(value, list | tuple):
        total = len(start) + sum(len(v) for v in value if isinstance(v, SIZED))
        if total > MAX_ITEMS:
            raise SecurityError(f"sum makes a sequence of more than {MAX_ITEMS} items")


def _check_striptags(value: Any, *args: Any, **kwargs: Any) -> None:
    text = str(value) if isinstance(value, str) else ""
    if len(text) * text.count("<") > 200_000_000:  # markupsafe's striptags is quadratic in tags
        raise SecurityError("striptags on this much markup is too slow for a template")


def _check_urlize(value: Any, *args: Any, **kwargs: Any) -> None:
    extra = sum(size_of(a) for a in (*args, *kwargs.values()) if isinstance(a, str))
    if isinstance(value, str) and (len(value) > 200_000 or len(value) * (4 + extra) > MAX_TOTAL_CHARS):
        raise SecurityError("urlize on this much text is too slow for a template")


def _check_stringify(value: Any, *args: Any, **kwargs: Any) -> None:
    check_size(value)


def _check_center(value: Any, width: Any = 80) -> None:
    check_size(value)
    check_numbers((width,))


_BEFORE: dict[str, Callable[..., None]] = {
    "indent": _check_indent, "replace": _check_replace, "wordwrap": _check_wordwrap,
    "format": _check_format, "urlize": _check_urlize, "striptags": _check_striptags, "sum": _check_sum,
    "slice": _check_slice,
    **{name: _check_items for name in ("sort", "unique", "batch", "groupby", "dictsort", "reverse",
                                      "map", "select", "reject", "selectattr", "rejectattr", "random", "min",
                                      "max", "items")},
    **{name: _check_stringify for name in ("string", "pprint", "tojson", "urlencode", "xmlattr", "e",
                                          "escape", "forceescape", "safe", "list", "title")},
    "center": _check_center,
}


def guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` (a Jinja filter) with its numbers, growth and result checked and counted."""
    from jinja2.utils import _PassArg

    skip = 0 if _PassArg.from_obj(fn) is None else 1
    before = _BEFORE.get(name)

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget.step()
        if name == "join" and len(args) > skip:
            separator = args[skip + 1] if len(args) > skip + 1 else kwargs.get("d", "")
            args = (*args[:skip], joined(separator, args[skip]), *args[skip + 1:])
        elif before is not None and len(args) > skip:
            before(*args[skip:], **kwargs)
        return account(fn(*args, **kwargs))

    return guarded


# --- the template tree: every loop, concatenation and output through a counted filter --------------

LOOP_FILTER = "__polybot_loop"
CONCAT_FILTER = "__polybot_concat"
OUTPUT_FILTER = "__polybot_output"


@pass_context
def _loop(context: Any, iterable: Any) -> Iterator[Any]:
    return counted(iterable)


@pass_context
def _concat(context: Any, items: list[Any]) -> str:
    budget.step()
    total = 0
    for item in items:
        total += size_of(item)
    if total > MAX_PROMPT_CHARS:
        raise SecurityError(f"concatenating makes a string of more than {MAX_PROMPT_CHARS} characters")
    result = "".join(map(str, items))
    budget.made(len(result))
    return result


@pass_context
def _output(context: Any, value: Any) -> Any:
    budget.step()
    budget.made(size_of(value, MAX_PROMPT_CHARS))
    return value


FILTERS: dict[str, Callable[..., Any]] = {LOOP_FILTER: _loop, CONCAT_FILTER: _concat, OUTPUT_FILTER: _output}


class Bound(NodeTransformer):
    """Rewrites a parsed template so its loops, `~` and output pass through the counted filters."""

    @staticmethod
    def _filter(node: nodes.Node, name: str, lineno: int) -> nodes.Filter:
        return nodes.Filter(node, name, [], [], None, None, lineno=lineno)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._filter(node.iter, LOOP_FILTER, node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return self._filter(nodes.List(node.nodes, lineno=node.lineno), CONCAT_FILTER, node.lineno)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [self._filter(nodes.Const(n.data, lineno=n.lineno) if isinstance(n, nodes.TemplateData)
                                   else n, OUTPUT_FILTER, n.lineno) for n in node.nodes]
        return node


def bounded_lipsum(lipsum: Callable[..., str]) -> Callable[..., str]:
    def lorem(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        if n > 100 or max > 1000:
            raise SecurityError("lipsum() is limited to 100 paragraphs of 1000 words in a template")
        return lipsum(n, html, min, max)

    return lorem
