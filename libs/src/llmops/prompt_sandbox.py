"""The bounded Jinja2 sandbox behind :mod:`llmops.prompts`: Jinja2's immutable sandbox, plus a budget per render.

Jinja2's sandbox stops attribute tricks but not templates that build huge values or loop for ever
(``{{ 'x' * 10**9 }}``, ``{{ '%999999999s' % 1 }}``, nested loops). This one refuses, with :class:`RenderLimit`:

- operators and calls that would build a string, list or integer over the caps, before building it
  (``*``, ``**``, ``%``, ``+``, ``~``, ``str.format``/``center``/``ljust``/``replace``/``join``..., the filters
  ``center``, ``indent``, ``format``, ``join``, ``replace``, ``batch``, ``slice``; ranges over ``MAX_RANGE``);
- any single value over :data:`MAX_OUTPUT_CHARS`, and more than :data:`MAX_BUILT_CHARS` built in one render;
- output over :data:`MAX_OUTPUT_CHARS` (blocks and macros counted as they are produced), loops over
  :data:`MAX_LOOP_ITEMS` items in all;
- a render that runs past its time budget (checked as loops iterate and at every call, operator and filter).

The checks cost nothing for templates that use none of these (operators are intercepted only where they appear).
Hand-written because Jinja2 offers the hooks (``intercepted_binops``, ``call``, ``concat``) but no limits.
"""

from __future__ import annotations

import functools
import math
import re
import string
import threading
import time
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator
from jinja2.runtime import markup_join
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment, SecurityError

#: The rendered text, and any one string or list a template builds, in characters (or items).
MAX_OUTPUT_CHARS = 1_000_000
#: Everything a render builds together (strings and lists counted by size), so a loop cannot pile up copies.
MAX_BUILT_CHARS = 20_000_000
#: Integers a template computes (``**``, ``*``), in bits.
MAX_INT_BITS = 100_000
#: The items all loops of one render may take together (each loop is also under the time budget).
MAX_LOOP_ITEMS = 1_000_000
#: The default time budget of one render, in seconds.
RENDER_SECONDS = 1.0


class RenderLimit(SecurityError):
    """A template went over one of the render limits (size, time); the message names which."""


class _Budget(threading.local):
    deadline = math.inf
    seconds = RENDER_SECONDS
    built = 0
    items = 0


_budget = _Budget()
_monotonic = time.monotonic


def start_budget(seconds: float = RENDER_SECONDS) -> None:
    """Start the budget of one render in this thread: ``seconds`` from now, nothing built yet."""
    _budget.deadline = time.monotonic() + seconds
    _budget.seconds = seconds
    _budget.built = 0
    _budget.items = 0


def _check_time() -> None:
    if _monotonic() > _budget.deadline:
        raise RenderLimit(f"the render took longer than its time limit ({_budget.seconds:g} s)")


def _refuse(what: str) -> RenderLimit:
    return RenderLimit(f"{what} would be over the limit of {MAX_OUTPUT_CHARS:,} characters")


def _weight(value: Any) -> int:
    """Characters (or items) a value holds, counting strings inside a list or tuple once more."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return len(value) + sum(len(item) for item in value if isinstance(item, str))
    if isinstance(value, (dict, set, frozenset)):
        return len(value)
    return 0


def _built(value: Any) -> Any:
    """Count what an operation built against the caps, and hand it back."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise RenderLimit(f"an integer over {MAX_INT_BITS:,} bits")
        return value
    size = _weight(value)
    if size > MAX_OUTPUT_CHARS:
        raise _refuse("a value of this size")
    _budget.built += size
    if _budget.built > MAX_BUILT_CHARS:
        raise RenderLimit(f"the render built over {MAX_BUILT_CHARS:,} characters in all")
    return value


def _check_repeat(seq: Any, times: Any) -> None:
    if (
        isinstance(times, int)
        and isinstance(seq, (str, list, tuple))
        and _weight(seq) * max(times, 0) > MAX_OUTPUT_CHARS
    ):
        raise _refuse(f"repeating a value of {len(seq):,} items {times:,} times")


def _check_binop(op: str, left: Any, right: Any) -> None:
    if op == "*":
        _check_repeat(left, right)
        _check_repeat(right, left)
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise RenderLimit(f"a product over {MAX_INT_BITS:,} bits")
    elif op == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if right > MAX_INT_BITS or right * abs(left).bit_length() > MAX_INT_BITS:
            raise RenderLimit(f"a power over {MAX_INT_BITS:,} bits")
    elif op == "+":
        if isinstance(left, (str, list, tuple)) and _weight(left) + _weight(right) > MAX_OUTPUT_CHARS:
            raise _refuse("the sum")
    elif op == "%" and isinstance(left, str):
        _check_printf(left, right)


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")


def _args_weight(args: Any) -> int:
    values = args.values() if isinstance(args, dict) else args if isinstance(args, tuple) else (args,)
    return max((_weight(v) for v in values), default=0)


def _check_printf(fmt: str, args: Any) -> None:
    """``'%s' % args``: no ``*`` widths, no width or precision over the cap, no output over it."""
    specs = _PRINTF.findall(fmt)
    for width, precision in specs:
        if "*" in (width, precision):
            raise RenderLimit("`*` widths and precisions are not allowed in % formatting")
        if max(int(width or 0), int(precision or 0)) > MAX_OUTPUT_CHARS:
            raise _refuse("a % format width")
    if len(fmt) + len(specs) * _args_weight(args) > MAX_OUTPUT_CHARS:
        raise _refuse("the % formatted text")


def _check_str_format(fmt: str, args: tuple, kwargs: dict) -> None:
    """``str.format``: no nested fields in a spec, no width over the cap, no output over it."""
    fields = 0
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is None:
            continue
        fields += 1
        if spec and ("{" in spec or any(int(n) > MAX_OUTPUT_CHARS for n in re.findall(r"\d+", spec))):
            raise _refuse("a format spec")
    if len(fmt) + fields * max(_args_weight(args), _args_weight(kwargs)) > MAX_OUTPUT_CHARS:
        raise _refuse("the formatted text")


def _check_replace(text: str, old: str, new: str, count: int = -1) -> None:
    hits = (len(text) // len(old) if old else len(text) + 1) if count < 0 else count
    if len(text) + hits * max(len(new) - len(old), 0) > MAX_OUTPUT_CHARS:
        raise _refuse("the replaced text")


def _check_join(sep: Any, items: Any) -> None:
    if isinstance(items, (list, tuple)) and len(sep) * len(items) + _weight(items) > MAX_OUTPUT_CHARS:
        raise _refuse("the joined text")


def _check_width(width: Any, *_: Any, **__: Any) -> None:
    if isinstance(width, int) and width > MAX_OUTPUT_CHARS:
        raise _refuse(f"a width of {width:,}")


#: str methods that can build more than they are given, and what each must respect.
_STR_METHODS = {
    "center": lambda s, width, *a: _check_width(width),
    "ljust": lambda s, width, *a: _check_width(width),
    "rjust": lambda s, width, *a: _check_width(width),
    "zfill": lambda s, width, *a: _check_width(width),
    "expandtabs": lambda s, tabsize=8: _check_width(s.count("\t") * tabsize + len(s)),
    "replace": _check_replace,
    "join": _check_join,
}


def _filter_checks() -> dict[str, Any]:
    """Checks of the filters that can build more than they are given: each takes the filter's arguments and
    returns the value to filter (a generator made a list, so that it can be measured)."""

    def indent(s, width=4, *a, **k):
        lines = str(s).count("\n") + 1
        _check_width(len(str(s)) + lines * (len(width) if isinstance(width, str) else width))
        return s

    def format_(value, *args, **kwargs):
        _check_printf(str(value), kwargs or args)
        return value

    def join(value, d="", attribute=None):
        items = value if isinstance(value, (list, tuple)) else list(value)
        _check_join(d, items)
        return items

    def replace(value, old, new, count=None):
        _check_replace(str(value), str(old), str(new), -1 if count is None else count)
        return value

    def width(value, width=80, *a, **k):
        _check_width(width)
        return value

    checks = {"indent": indent, "format": format_, "join": join, "replace": replace}
    return checks | {"center": width, "batch": width, "slice": width}


def _bounded_filter(func: Any, check: Any) -> Any:
    first = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0  # the context comes first

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_time()
        if check is not None and len(args) > first:
            args = (*args[:first], check(*args[first:], **kwargs), *args[first + 1 :])
        return _built(func(*args, **kwargs))

    return bounded


def _bounded_range(*args: int) -> range:
    result = range(*args)
    if len(result) > MAX_RANGE:
        raise RenderLimit(f"a range of {len(result):,} items (the limit is {MAX_RANGE:,})")
    return result


def _loop(iterable: Any) -> Any:
    """Every for loop iterates through this: the time budget is checked as it starts and every 256 items, and all
    loops of a render together take at most :data:`MAX_LOOP_ITEMS` items."""
    budget = _budget
    if _monotonic() > budget.deadline:
        _check_time()
    if type(iterable) in _SIZED and (n := len(iterable)) <= 256:
        budget.items += n
        if budget.items > MAX_LOOP_ITEMS:
            _count_items(0)
        return iterable
    return _checked(iterable)


_SIZED = frozenset({list, tuple, dict, str, range})


def _count_items(n: int) -> None:
    _budget.items += n
    if _budget.items > MAX_LOOP_ITEMS:
        raise RenderLimit(f"the loops of the render went over {MAX_LOOP_ITEMS:,} items in all")


def _checked(iterable: Any) -> Any:
    for n, item in enumerate(iterable):
        if not n & 255:
            _check_time()
            _count_items(256)
        yield item


def _output(chunks: Any) -> str:
    """What a template produced, refused once over the cap (measured before it is joined: the chunks are mostly
    references to strings that exist already, and their number is bounded by the loop budget)."""
    parts = list(chunks)
    if sum(map(len, parts)) > MAX_OUTPUT_CHARS:
        raise _refuse("the rendered text")
    return "".join(parts)


class _Buffer(list):
    """Where a macro, call block or ``{% set %}`` body collects its output: refused once over the cap."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, chunk: str) -> None:
        self.size += len(chunk)
        if self.size > MAX_OUTPUT_CHARS:
            raise _refuse("the rendered text")
        super().append(chunk)

    def extend(self, chunks: Any) -> None:
        for chunk in chunks:
            self.append(chunk)


class _Generator(CodeGenerator):
    """Compiles every ``for`` loop through :func:`_loop`, every ``~`` through the bounded concatenation and every
    output buffer as a :class:`_Buffer`."""

    def buffer(self, frame: Any) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")

    def visit_Template(self, node: nodes.Template, frame: Any = None) -> None:
        for loop in node.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "llmops_loop", [], [], None, None, lineno=loop.lineno)
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with the render limits of this module."""

    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, **options)
        self.globals["range"] = _bounded_range
        checks = _filter_checks()
        self.filters = {name: _bounded_filter(f, checks.get(name)) for name, f in self.filters.items()}
        self.filters["llmops_loop"] = _loop
        self.concat = _output
        self.output_buffer = _Buffer

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        _check_binop(operator, left, right)
        return _built(self.binop_table[operator](left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_time()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and (check := _STR_METHODS.get(getattr(__obj, "__name__", ""))) is not None:
            if __obj.__name__ == "join":
                args = (list(args[0]),) if args else args  # measured before joining
            check(owner, *args, **kwargs)
        return _built(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Any:
        formatter = super().wrap_str_format(value)
        if formatter is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_str_format(fmt, args, args[0] if value.__name__ == "format_map" and args else kwargs)
            return _built(formatter(*args, **kwargs))

        return checked

    def bounded_concat(self, values: tuple) -> str:
        pieces, total = [], 0
        for value in values:
            if _weight(value) > MAX_OUTPUT_CHARS:
                raise _refuse("the concatenation")
            piece = value if isinstance(value, str) else str(value)
            total += len(piece)
            if total > MAX_OUTPUT_CHARS:
                raise _refuse("the concatenation")
            pieces.append(piece)
        if any(hasattr(p, "__html__") for p in pieces):
            return markup_join(pieces)
        return _built("".join(pieces))
