"""The Jinja sandbox message templates run in, with limits on size and time.

Templates are untrusted (an imported template file is someone else's text), and Jinja's own
sandbox only keeps them away from Python's internals: it does not stop a 30-byte template from
asking for a 3 GB string or a loop of 10^10 turns. LimitedSandbox adds, for every render:

- no evaluation at compile time: Jinja folds constant expressions such as
  ``'x'|center(3000000000)`` while compiling, outside any bound; here nothing but literal text
  is folded, so every filter and operator runs under the checks below;
- a size check before each operation that can make a large value out of a small one (the
  filters center/indent/wordwrap/truncate/replace/format/join/batch/slice/tojson/sum, the str
  methods center/ljust/rjust/zfill/expandtabs/replace/join/format, ``%`` formatting, ``*``,
  ``**``, ``+`` and ``~``, block captures, lipsum) and a check of the size of what each filter
  or call gave back: no string may pass MAX_STRING characters, no list MAX_ITEMS items, no
  integer MAX_DIGITS digits;
- a time budget: each loop turn, call and filter checks the render's deadline (see budget()).

Each violation raises LimitExceeded (a jinja2 SecurityError) whose message names the limit;
compose turns it into the TemplateError of the part and row being rendered.
"""

from __future__ import annotations

import functools
import math
import re
import string
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import _PassArg, generate_lorem_ipsum
from markupsafe import Markup

__all__ = [
    "MAX_DIGITS",
    "MAX_ITEMS",
    "MAX_LIPSUM_WORDS",
    "MAX_STRING",
    "TIME_BUDGET",
    "LimitExceeded",
    "LimitedSandbox",
    "TimeBudgetExceeded",
    "budget",
]

MAX_STRING = 10_000_000  # characters in any one string a template makes (= one part's output)
MAX_ITEMS = 1_000_000  # items in any one list a template makes
MAX_DIGITS = 10_000  # decimal digits of any one integer a template makes
MAX_LIPSUM_WORDS = 100_000  # words of placeholder text lipsum() may make
MAX_INDENT = 100  # tojson(indent=...)
TIME_BUDGET = 2.0  # seconds one message (all its parts) may take to render

_LOG10_2 = math.log10(2)


class LimitExceeded(SecurityError):
    """A template asked for more than a limit allows; the message names the limit."""


class TimeBudgetExceeded(LimitExceeded):
    """A render ran past its time budget."""


# --- the time budget ---------------------------------------------------------------------

class _State(threading.local):
    deadline: tuple[float, float] | None = None  # (time.monotonic() deadline, seconds allowed)


_state = _State()


class budget:  # noqa: N801 - used as a function: with budget(): ...
    """Give the renders made inside (in this thread) `seconds` in all; nested budgets share the
    outer deadline when it comes first. (A class, not @contextmanager: it runs for every part
    of every message, and a generator-based one costs several times more.)"""

    __slots__ = ("outer", "seconds")

    def __init__(self, seconds: float = TIME_BUDGET) -> None:
        self.seconds = seconds
        self.outer: tuple[float, float] | None = None

    def __enter__(self) -> None:
        self.outer = outer = _state.deadline
        deadline = time.monotonic() + self.seconds
        if outer is None or deadline < outer[0]:
            _state.deadline = (deadline, self.seconds)

    def __exit__(self, *exc: object) -> None:
        _state.deadline = self.outer


_ticks = 0


def _tick() -> None:
    # The clock is read every 32nd step only: reading it (and the thread's deadline) on every
    # filter call and loop turn would slow normal templates measurably. The counter is shared
    # by threads and not locked; a lost increment only moves a check by a step.
    global _ticks
    _ticks += 1
    if _ticks & 31:
        return
    deadline = _state.deadline
    if deadline is not None and time.monotonic() > deadline[0]:
        seconds = deadline[1]
        raise TimeBudgetExceeded(
            f"took longer than {seconds:g} s to fill in, which is too long: the limit is {seconds:g} s "
            "per message (look for a loop or a macro that runs too many times)"
        )


def _budgeted(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _tick()
        yield item


def _counted(iterable: Iterable[Any]) -> Iterator[Any]:
    """The items, within the time budget and stopping past MAX_ITEMS of them."""
    for count, item in enumerate(iterable, 1):
        _tick()
        if count > MAX_ITEMS:
            raise LimitExceeded(
                f"asks for a list of more than {MAX_ITEMS:,} items, which is too large: the limit "
                f"is {MAX_ITEMS:,} items"
            )
        yield item


# --- sizes ---------------------------------------------------------------------------------


def _too_long(size: int, what: str = "string") -> LimitExceeded:
    if what == "string":
        return LimitExceeded(
            f"asks for a {size:,}-character string, which is too large: the limit is "
            f"{MAX_STRING:,} characters"
        )
    return LimitExceeded(
        f"asks for a list of {size:,} items, which is too large: the limit is {MAX_ITEMS:,} items"
    )


def _check_string(size: int) -> None:
    if size > MAX_STRING:
        raise _too_long(size)


def _check_items(size: int) -> None:
    if size > MAX_ITEMS:
        raise _too_long(size, "list")


def _check_digits(digits: int) -> None:
    if digits > MAX_DIGITS:
        raise LimitExceeded(
            f"asks for a number of about {digits:,} digits, which is too large: the limit is "
            f"{MAX_DIGITS:,} digits"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_STRINGS = (str, bytes, bytearray)
_COLLECTIONS = (list, tuple, dict, set, frozenset)


def _check_result(value: Any) -> Any:
    """The value, once it is known to be within the limits."""
    if isinstance(value, _STRINGS):
        if len(value) > MAX_STRING:
            _check_string(len(value))
    elif isinstance(value, _COLLECTIONS):
        if len(value) > MAX_ITEMS:
            _check_items(len(value))
    elif isinstance(value, int) and value.bit_length() > 3 * MAX_DIGITS:
        _check_digits(int(value.bit_length() * _LOG10_2) + 1)
    return value


def _size(value: Any) -> int:
    """Characters of a value as text, when that is cheap to know (else 0)."""
    return len(value) if isinstance(value, str | bytes | bytearray) else 0


def _width(value: Any) -> int:
    return value if _is_int(value) else 0


def _replace_size(s: Any, old: Any, new: Any, count: Any) -> int:
    if not (isinstance(s, str | bytes) and isinstance(old, str | bytes) and isinstance(new, str | bytes)):
        return 0
    try:
        found = s.count(old) if old else len(s) + 1
    except TypeError:
        return 0
    if _is_int(count) and count >= 0:
        found = min(found, count)
    return len(s) + found * (len(new) - len(old))


# printf-style conversions: %[(key)][flags][width][.precision][length]type
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.S)


def _percent_size(fmt: str, args: Any) -> int:
    """An upper estimate of the size of fmt % args from the widths and precisions it asks for."""
    positional = list(args) if isinstance(args, tuple) else [args]
    size = len(fmt)
    for match in _PERCENT.finditer(fmt):
        size -= len(match.group())
        for number in match.group(1, 2):
            if number == "*":
                value = positional.pop(0) if positional else 0
                size += abs(value) if _is_int(value) else 0
            elif number:
                size += int(number) if len(number) < 20 else 10**20
    return size


# format spec: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(\d+)?[,_]?(?:\.(\d+))?", re.S)


def _spec_size(spec: str) -> int:
    match = _SPEC.match(spec)
    if not match:
        return 0
    return sum(int(n) if len(n) < 20 else 10**20 for n in match.groups() if n)


class _LimitedFormatterMixin:
    """str.format in the sandbox, with the widths and precisions it asks for counted."""

    _asked = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        self._asked += _spec_size(format_spec) + _size(value)
        _check_string(self._asked)
        return super().format_field(value, format_spec)  # type: ignore[misc]


class _LimitedFormatter(_LimitedFormatterMixin, SandboxedFormatter):
    pass


class _LimitedEscapeFormatter(_LimitedFormatterMixin, SandboxedEscapeFormatter):
    pass


# --- filters -------------------------------------------------------------------------------


def _filter_estimate(name: str, a: dict[str, Any]) -> None:
    """Raise LimitExceeded when the filter, called with these arguments, would pass a limit."""
    if name == "center":
        _check_string(max(_width(a.get("width")), _size(a.get("value"))))
    elif name == "indent":
        s, width = a.get("s"), a.get("width")
        prefix = width if _is_int(width) else _size(width)
        lines = s.count("\n") + 1 if isinstance(s, str) else 1
        _check_string(_size(s) + lines * prefix)
    elif name == "wordwrap":
        s, width, wrap = a.get("s"), a.get("width"), a.get("wrapstring")
        lines = _size(s) // max(1, _width(width) // 2) + 1 + (s.count("\n") if isinstance(s, str) else 0)
        _check_string(_size(s) + lines * max(1, _size(wrap)))
    elif name == "truncate":
        _check_string(_width(a.get("length")))
        _check_string(_width(a.get("leeway")))
    elif name == "replace":
        _check_string(_replace_size(a.get("s"), a.get("old"), a.get("new"), a.get("count")))
    elif name == "format":
        value = a.get("value")
        if isinstance(value, str):
            _check_string(_percent_size(value, a["kwargs"] or a["args"]))
    elif name == "batch":
        _check_items(_width(a.get("linecount")))
    elif name == "slice":
        _check_items(_width(a.get("slices")))
    elif name == "tojson":
        indent = a.get("indent")
        if (_width(indent) if not isinstance(indent, str) else len(indent)) > MAX_INDENT:
            raise LimitExceeded(
                f"asks for an indent of {_width(indent) or len(indent):,}, which is too large: "
                f"the limit is {MAX_INDENT}"
            )


def _materialise(name: str, a: dict[str, Any]) -> dict[str, Any]:
    """join and sum get their items as a list, counted before the work is done."""
    key = "iterable" if name == "sum" else "value"
    items = a.get(key)
    if items is None or isinstance(items, str | bytes):
        return a
    if not isinstance(items, list | tuple):
        items = list(_counted(items))
        a = {**a, key: items}
    _check_items(len(items))
    if name == "list":
        pass
    elif name == "join":
        sep = _size(a.get("d"))
        _check_string(sep * max(0, len(items) - 1) + (0 if a.get("attribute") is not None else sum(map(_size, items))))
    else:  # sum: adding lists or tuples copies the total so far each time (quadratic)
        start = a.get("start", 0)
        if isinstance(start, list | tuple | str):
            total = len(start) + sum(len(x) for x in items if isinstance(x, list | tuple | str))
            _check_items(total)
            _check_items(total * len(items) // 100)
    return a


# The arguments of the filters checked above, by name, as Jinja's filters take them (the first
# parameter of some is the environment or eval context Jinja passes). Binding by calling is
# much cheaper than inspect.signature().bind on every call.
def _b_center(value: Any, width: Any = 80) -> dict[str, Any]:
    return locals()


def _b_indent(s: Any, width: Any = 4, first: Any = False, blank: Any = False) -> dict[str, Any]:
    return locals()


def _b_wordwrap(s: Any, width: Any = 79, break_long_words: Any = True, wrapstring: Any = None, break_on_hyphens: Any = True) -> dict[str, Any]:
    return locals()


def _b_truncate(s: Any, length: Any = 255, killwords: Any = False, end: Any = "...",
                leeway: Any = None) -> dict[str, Any]:
    return locals()


def _b_replace(s: Any, old: Any, new: Any, count: Any = None) -> dict[str, Any]:
    return locals()


def _b_format(value: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return locals()


def _b_batch(value: Any, linecount: Any, fill_with: Any = None) -> dict[str, Any]:
    return locals()


def _b_slice(value: Any, slices: Any, fill_with: Any = None) -> dict[str, Any]:
    return locals()


def _b_tojson(value: Any, indent: Any = None) -> dict[str, Any]:
    return locals()


def _b_join(value: Any, d: Any = "", attribute: Any = None) -> dict[str, Any]:
    return locals()


def _b_sum(iterable: Any, attribute: Any = None, start: Any = 0) -> dict[str, Any]:
    return locals()


def _b_list(value: Any) -> dict[str, Any]:
    return locals()


_BINDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "center": _b_center, "indent": _b_indent, "wordwrap": _b_wordwrap, "truncate": _b_truncate,
    "replace": _b_replace, "format": _b_format, "batch": _b_batch, "slice": _b_slice,
    "tojson": _b_tojson, "join": _b_join, "sum": _b_sum, "list": _b_list,
}
_MATERIALISED = {"join": ("value", "d", "attribute"), "sum": ("iterable", "attribute", "start"), "list": ("value",)}


# Filters whose result is never much longer than what they are given (or a number): they
# run unwrapped, as the wrapper would cost more than the filter on every normal message.
_PLAIN_FILTERS = frozenset({
    "abs", "attr", "capitalize", "count", "d", "default", "first", "float", "int", "last",
    "length", "lower", "max", "min", "random", "round", "safe", "striptags", "title", "trim",
    "upper", "wordcount",
})


def _limited_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    if name in _PLAIN_FILTERS:
        return func
    binder = _BINDERS.get(name)
    order = _MATERIALISED.get(name)
    # Jinja passes the environment, eval context or context first to some filters (and to
    # every filter with an async variant); the binders take the filter's own arguments.
    passed = 1 if _PassArg.from_obj(func) is not None else 0

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _tick()
        if binder is not None:
            try:
                arguments = binder(*args[passed:], **kwargs)
            except TypeError:
                arguments = None  # the filter itself says what is wrong with the arguments
            if arguments is not None:
                if order is not None:
                    arguments = _materialise(name, arguments)
                    args, kwargs = (*args[:passed], *(arguments[k] for k in order)), {}
                else:
                    _filter_estimate(name, arguments)
        return _check_result(func(*args, **kwargs))

    return wrapper


# --- methods and globals -------------------------------------------------------------------


def _method_estimate(target: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Check a str/bytes/list method call before it runs; returns the (possibly listed) args."""
    if isinstance(target, str | bytes | bytearray):
        if name in ("center", "ljust", "rjust", "zfill") and args:
            _check_string(max(_width(args[0]), len(target)))
        elif name == "expandtabs":
            tabsize = args[0] if args else kwargs.get("tabsize", 8)
            _check_string(len(target) + target.count("\t" if isinstance(target, str) else b"\t") * _width(tabsize))
        elif name == "replace" and len(args) >= 2:
            count = args[2] if len(args) > 2 else kwargs.get("count", -1)
            _check_string(_replace_size(target, args[0], args[1], count))
        elif name == "join" and args:
            items = args[0] if isinstance(args[0], list | tuple) else list(_counted(args[0]))
            _check_items(len(items))
            _check_string(len(target) * max(0, len(items) - 1) + sum(map(_size, items)))
            args = (items, *args[1:])
    elif isinstance(target, list):
        if name == "extend" and args:
            items = args[0] if isinstance(args[0], list | tuple) else list(_counted(args[0]))
            _check_items(len(target) + len(items))
            args = (items, *args[1:])
        elif name in ("append", "insert"):
            _check_items(len(target) + 1)
    return args


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    words = _width(n) * _width(max)
    if words > MAX_LIPSUM_WORDS:
        raise LimitExceeded(
            f"asks for up to {words:,} words of placeholder text (lipsum), which is too many: "
            f"the limit is {MAX_LIPSUM_WORDS:,} words"
        )
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


# --- compiling -----------------------------------------------------------------------------


class _LimitedCodeGenerator(CodeGenerator):
    """Jinja's code generator without compile-time evaluation, with a deadline in every loop."""

    def _output_child_to_const(self, node: nodes.Expr, frame: Frame, finalize: Any) -> str:
        # Jinja evaluates constant {{ expressions }} while compiling, outside every limit;
        # only the template's own text (and plain literals) are taken as they are.
        if isinstance(node, nodes.TemplateData | nodes.Const):
            return super()._output_child_to_const(node, frame, finalize)
        raise nodes.Impossible()

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # for x in environment.budgeted(<iterable>): the deadline is checked at every turn.
        # (Jinja allows no new node types: the wrapper is a call of an environment attribute.)
        wrapped = node.iter
        if not (isinstance(wrapped, nodes.Call) and isinstance(wrapped.node, nodes.EnvironmentAttribute)):
            node.iter = nodes.Call(
                nodes.EnvironmentAttribute("budgeted", lineno=node.lineno), [wrapped], [], None, None,
                lineno=node.lineno,
            )
        super().visit_For(node, frame)

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        if isinstance(node.node, nodes.EnvironmentAttribute) and node.node.name == "budgeted":
            self.write("environment.budgeted(")  # ours, straight: not through sandboxed call()
            self.visit(node.args[0], frame)
            self.write(")")
            return
        super().visit_Call(node, frame, forward_caller=forward_caller)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # Jinja's visit_Concat, with the pieces counted before they are joined (a ~ b ~ c).
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"environment.checked_concat({func_name}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _checked_join(pieces: Iterable[str]) -> str:
    """environment.concat: how blocks, macros and {% set %} captures join their output."""
    if not isinstance(pieces, list):
        pieces = list(pieces)
    _check_string(sum(map(len, pieces)))
    return "".join(pieces)


class LimitedSandbox(SandboxedEnvironment):
    """Jinja's SandboxedEnvironment plus the size and time limits described above."""

    code_generator_class = _LimitedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("optimized", False)  # no constant folding at compile time
        super().__init__(*args, **kwargs)
        self.filters = {name: _limited_filter(name, func) for name, func in self.filters.items()}
        self.globals["lipsum"] = _lipsum
        self.concat = _checked_join  # type: ignore[assignment]

    # generated code calls these two
    budgeted = staticmethod(_budgeted)

    @staticmethod
    def checked_concat(join: Callable[[Iterable[Any]], str], pieces: tuple[Any, ...]) -> str:
        _check_string(sum(map(_size, pieces)))
        return _check_result(join(pieces))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if _is_int(times) and isinstance(seq, str | bytes):
                    _check_string(len(seq) * times)
                elif _is_int(times) and isinstance(seq, list | tuple):
                    _check_items(len(seq) * times)
            if _is_int(left) and _is_int(right):
                _check_digits(int((left.bit_length() + right.bit_length()) * _LOG10_2))
        elif operator == "**":
            if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
                _check_digits(int(min(right, 10**18) * math.log10(abs(left))) + 1)
        elif operator == "+":
            if isinstance(left, str | bytes) and isinstance(right, str | bytes):
                _check_string(len(left) + len(right))
            elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
                _check_items(len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            _check_string(_percent_size(left, right))
        return _check_result(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        if isinstance(__obj, types.BuiltinMethodType | types.MethodType):
            args = _method_estimate(getattr(__obj, "__self__", None), __obj.__name__, args, kwargs)
        return _check_result(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja's own wrapper, with a formatter that counts the widths it is asked for.
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or value.__name__ not in (
            "format", "format_map"
        ):
            return None
        f_self = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type = type(f_self)
        is_format_map = value.__name__ == "format_map"

        def wrapper(*args: Any, **kwargs: Any) -> str:
            formatter: string.Formatter
            if isinstance(f_self, Markup):
                formatter = _LimitedEscapeFormatter(self, escape=f_self.escape)
            else:
                formatter = _LimitedFormatter(self)
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs = args[0]
                args = ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return functools.update_wrapper(wrapper, value)
