"""Record: the base of the documents, settings and reports, a keyword-only dataclass whose fields are
checked and converted from their type hints as it is made.

It does the part of a schema library this package needs, without one's 60-80 ms import on every
command: a CSV cell "120" becomes the int 120, "" in a number's place is refused, an unknown key is
refused where a class says so (`_extra = "forbid"`), the JSON form shows a Url redacted and a secret
hidden (anything not plain JSON is written as its `str()`), and a ValidationError names each field and
rule, never the value given (a value may be a signed URL or a key).
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal, Self, Union, get_args, get_origin

_Check = Callable[[Any], Any]


class ValidationError(ValueError):
    """A record's fields break their rules: `reasons` is [(field path, rule)], never the value given."""

    def __init__(self, reasons: list[tuple[str, str]]) -> None:
        self.reasons = list(reasons)
        super().__init__("; ".join(f"{where or 'document'}: {rule}" for where, rule in self.reasons))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reasons,))


def _invalid(rule: str) -> ValidationError:
    return ValidationError([("", rule)])


def _nested(where: str | int, exc: ValidationError) -> ValidationError:
    return ValidationError([(f"{where}.{path}" if path else str(where), rule) for path, rule in exc.reasons])


# -- rules a field's hint can carry: Annotated[int, Ge(0)] ----------------------------------------
class Rule:
    """A constraint on a checked value: `problem(value)` is what is wrong with it, or None."""

    def problem(self, value: Any) -> str | None:
        raise NotImplementedError


class Ge(Rule):
    def __init__(self, bound: float) -> None:
        self.bound = bound

    def problem(self, value: Any) -> str | None:
        return None if value >= self.bound else f"must be at least {self.bound}"


class Gt(Rule):
    def __init__(self, bound: float) -> None:
        self.bound = bound

    def problem(self, value: Any) -> str | None:
        return None if value > self.bound else f"must be greater than {self.bound}"


class Le(Rule):
    def __init__(self, bound: float) -> None:
        self.bound = bound

    def problem(self, value: Any) -> str | None:
        return None if value <= self.bound else f"must be at most {self.bound}"


class Match(Rule):
    """Text the whole of which matches `pattern`; `rule` is the message when it does not."""

    def __init__(self, pattern: str, rule: str = "") -> None:
        self.pattern = re.compile(pattern)
        self.rule = rule or f"must match {pattern}"

    def problem(self, value: Any) -> str | None:
        return None if self.pattern.fullmatch(value) else self.rule


NON_EMPTY = Match(r"(?s).+", "must not be empty")


# -- a checker for each kind of hint ----------------------------------------------------------------
def _text(value: Any) -> str:
    if type(value) is str or isinstance(value, str):
        return value
    raise _invalid("must be text")


def _integer(value: Any) -> int:
    """An int; also a whole float, text of one ("12", "12.0": what a spreadsheet or pandas writes), or
    any integer type (numpy's): never a bool."""
    if type(value) is int or isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        if isinstance(value, str):
            value = int(value) if re.fullmatch(r"\s*[+-]?[0-9]+\s*", value) else float(value)
        if isinstance(value, float):
            if value.is_integer():
                return int(value)
        elif hasattr(value, "__index__") and not isinstance(value, bool):
            return operator.index(value)
    except (ValueError, OverflowError):  # not a number, or past int's digit limit
        pass
    raise _invalid("must be a whole number")


def _number(value: Any) -> float:
    if type(value) is float:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise _invalid("must be a number")


_TRUTH = {"true": True, "yes": True, "on": True, "1": True, "t": True, "y": True,
          "false": False, "no": False, "off": False, "0": False, "f": False, "n": False}


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUTH:
        return _TRUTH[value.strip().lower()]
    raise _invalid("must be true or false")


def _none(value: Any) -> None:
    if value is None:
        return None
    raise _invalid("must be empty (null)")


DEPTH = 64  # nesting a value of any type may have: deeper is refused, not a RecursionError later
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _shallow(value: Any, depth: int = 0) -> Any:
    """A value of any type, as it is, refused where lists and mappings nest deeper than DEPTH."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, dict | list | tuple):
        if depth >= DEPTH:
            raise _invalid(f"nests deeper than {DEPTH}")
        for item in value.values() if isinstance(value, dict) else value:
            if isinstance(item, dict | list | tuple):
                _shallow(item, depth + 1)
    return value


_SIMPLE: dict[Any, _Check] = {str: _text, int: _integer, float: _number, bool: _flag, type(None): _none,
                              Any: _shallow, object: _shallow}


def checker(hint: Any) -> _Check:
    """The function that checks and converts a value for `hint` (raising ValidationError)."""
    if hint in _SIMPLE:
        return _SIMPLE[hint]
    origin, args = get_origin(hint), get_args(hint)
    if origin is typing.Annotated:
        return _with_rules(checker(args[0]), [rule for rule in args[1:] if isinstance(rule, Rule)])
    if origin is Literal:
        return _one_of(args)
    if origin in (Union, types.UnionType):
        return _any_of([checker(option) for option in args], type(None) in args)
    if origin in (list, tuple) and (origin is list or args[-1:] == (Ellipsis,)):
        return _sequence(checker(args[0]) if args else _shallow, origin)
    if origin is tuple:
        return _fixed([checker(arg) for arg in args])
    if origin is dict:
        return _mapping(checker(args[0]), checker(args[1])) if args else _mapping(_shallow, _shallow)
    if hint in (list, tuple, dict):
        return checker(hint[Any, Any] if hint is dict else hint[Any])
    if isinstance(hint, type) and issubclass(hint, Record):
        return _record(hint)
    coerce = getattr(hint, "coerce", None)  # Url, Secret: a classmethod that checks and converts
    if callable(coerce):
        return _coerced(coerce)
    raise TypeError(f"no rule for {hint!r}")


def _with_rules(inner: _Check, rules: list[Rule]) -> _Check:
    if inner is _text and len(rules) == 1 and isinstance(rules[0], Match):  # the common case, made quick
        fullmatch, rule = rules[0].pattern.fullmatch, rules[0].rule

        def text(value: Any) -> Any:
            if type(value) is not str:
                value = _text(value)
            if fullmatch(value):
                return value
            raise _invalid(rule)
        return text

    def check(value: Any) -> Any:
        value = inner(value)
        for rule in rules:
            problem = rule.problem(value)
            if problem:
                raise _invalid(problem)
        return value
    return check


def _one_of(allowed: tuple[Any, ...]) -> _Check:
    rule = f"must be one of {', '.join(map(repr, allowed))}"

    def check(value: Any) -> Any:
        for option in allowed:  # "1" is not 1, nor True 1; a str subclass (numpy's) is its text
            if value == option and (type(value) is type(option) or isinstance(value, str) and isinstance(option, str)):
                return option
        raise _invalid(rule)
    return check


def _any_of(options: list[_Check], optional: bool) -> _Check:
    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        problems: list[str] = []
        for option in options:
            if option is _none:
                continue
            try:
                return option(value)
            except ValidationError as exc:
                if len(options) - optional == 1:
                    raise
                problems.extend(rule for _, rule in exc.reasons if rule not in problems)
        raise _invalid(" or ".join(problems))
    return check


def _each(checks: Iterable[tuple[int, _Check, Any]]) -> list[Any]:
    """Each (position, checker, element) checked; every problem gathered, named by its position."""
    out, reasons = [], []
    for index, check, element in checks:
        try:
            out.append(check(element))
        except ValidationError as exc:
            reasons.extend(_nested(index, exc).reasons)
    if reasons:
        raise ValidationError(reasons)
    return out


def _sequence(item: _Check, kind: type) -> _Check:
    def check(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise _invalid("must be a list")
        out = _each((index, item, element) for index, element in enumerate(value))
        return out if kind is list else tuple(out)
    return check


def _fixed(items: list[_Check]) -> _Check:
    def check(value: Any) -> Any:
        if not isinstance(value, list | tuple) or len(value) != len(items):
            raise _invalid(f"must be a list of {len(items)}")
        pairs = enumerate(zip(items, value, strict=True))
        return tuple(_each((index, item, element) for index, (item, element) in pairs))
    return check


def _mapping(key: _Check, item: _Check) -> _Check:
    def check(value: Any) -> Any:
        if type(value) is not dict and not isinstance(value, Mapping):
            raise _invalid("must be a mapping")
        if key is _shallow and item is _shallow:
            return _shallow(dict(value))
        if key is _text:  # the common case, made quick: text keys; any failure is told below
            try:
                return {name if type(name) is str else _text(name): item(element) for name, element in value.items()}
            except ValidationError:
                pass
        out, reasons = {}, []
        for name, element in value.items():
            try:
                out[key(name)] = item(element)
            except ValidationError as exc:
                reasons.extend(_nested(name, exc).reasons)
        if reasons:
            raise ValidationError(reasons)
        return out
    return check


def _record(cls: type[Record]) -> _Check:
    def check(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        return cls.from_dict(value)
    return check


def _coerced(coerce: Callable[[Any], Any]) -> _Check:
    def check(value: Any) -> Any:
        try:
            return coerce(value)
        except (TypeError, ValueError) as exc:
            raise exc if isinstance(exc, ValidationError) else _invalid(str(exc)) from None
    return check


# -- the base class ----------------------------------------------------------------------------------
# A field as _init_for writes it out: (name, key as written in a dict or JSON ("storage-options" for
# storage_options, "class" for class_), the name again where it differs from the key else None,
# required, default, default factory, checker).
_Field = tuple[str, str, str | None, bool, Any, Callable[[], Any] | None, _Check]
_Plan = tuple[tuple[_Field, ...], tuple[dataclasses.Field[Any], ...]]
_UNSET = object()


@typing.dataclass_transform(kw_only_default=True, field_specifiers=(dataclasses.field,))
class Record:
    """A keyword-only dataclass, checked as it is made: each given value goes through the class's
    `_before` function for its field where there is one, then is converted to the field's hint
    (Annotated rules included). Defaults are trusted as written."""

    _extra: ClassVar[Literal["ignore", "forbid"]] = "ignore"  # "forbid": an unknown key is an error
    _dashed: ClassVar[bool] = False  # keys are written with "-" where the field has "_" (the settings)
    _strip: ClassVar[bool] = False   # text is stripped of surrounding whitespace first
    _before: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}  # field -> conversion before the type's
    _plan: ClassVar[_Plan]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls, init=False)

    def __init__(self, /, **values: Any) -> None:  # `/`: a key named "self" is a key like any other
        """The first record of its class: its checkers are made and its own __init__ written (_init_for),
        then called; later records of the class call that __init__ directly."""
        cls = type(self)
        if "_plan" not in cls.__dict__:
            cls._make_plan()
        cls.__dict__["__init__"](self, **values)

    @classmethod
    def _make_plan(cls) -> _Plan:
        """Each field's key, default and checker, from the class's type hints (resolved on first use, so
        that a hint may name a class defined below this one)."""
        hints = typing.get_type_hints(cls, include_extras=True)
        fields, private = [], []
        for spec in dataclasses.fields(cls):  # type: ignore[arg-type]
            if not spec.init:
                private.append(spec)
                continue
            key = spec.name[:-1] if spec.name.endswith("_") else spec.name
            key = key.replace("_", "-") if cls._dashed else key
            check = checker(hints[spec.name])
            if cls._strip:
                check = _stripped(check)
            before = cls._before.get(spec.name)
            if before is not None:
                check = _before(before, check)
            factory = spec.default_factory if spec.default_factory is not dataclasses.MISSING else None
            required = spec.default is dataclasses.MISSING and factory is None
            alias = spec.name if key != spec.name else None
            fields.append((spec.name, key, alias, required, spec.default, factory, check))
        plan = (tuple(fields), tuple(private))
        cls._plan = plan
        cls.__init__ = _init_for(cls, plan)  # type: ignore[method-assign]
        return plan

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """A record from a mapping (keys as written in JSON, or the fields' own names)."""
        if type(data) is dict:
            try:
                return cls(**data)
            except TypeError:  # a key that is not text: made text below
                pass
        if not isinstance(data, Mapping):
            raise _invalid("must be a mapping")
        return cls(**{str(key): value for key, value in data.items()})

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """A record from JSON text; text that is not JSON is a ValidationError naming where it breaks."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:  # where, never the text
            raise _invalid(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
        except UnicodeDecodeError:
            raise _invalid("invalid JSON: not UTF-8 text") from None
        except (ValueError, RecursionError):  # a number past int's digit limit; nesting past the stack
            raise _invalid("invalid JSON: a number too long or lists nested too deep") from None
        return cls.from_dict(data)

    @classmethod
    def default_of(cls, name: str) -> Any:
        """The default a field takes when none is given."""
        spec = cls.__dataclass_fields__[name]  # type: ignore[attr-defined]
        return spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes`, each checked as when a record is made (the fields kept were checked
        then); private attributes are carried over. A name that is no field is an error."""
        cls = type(self)
        if "_plan" not in cls.__dict__:
            cls._make_plan()
        fields = {field[0]: field for field in cls._plan[0]}
        copy = object.__new__(cls)
        state = copy.__dict__
        state.update(self.__dict__)
        reasons: list[tuple[str, str]] = []
        for name, value in changes.items():
            field = fields.get(name)
            if field is None:
                reasons.append((name, "unknown field"))
                continue
            try:
                state[name] = field[6](value)
            except ValidationError as exc:
                reasons.extend(_nested(field[1], exc).reasons)
        if reasons:
            raise ValidationError(reasons)
        return copy

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: keys as written (dashed, `class`), records nested, a Url redacted, anything not
        plain JSON as its `str()` (a secret shows only that it is one)."""
        plan = type(self).__dict__.get("_plan") or type(self)._make_plan()
        return {field[1]: _plain(self.__dict__[field[0]]) for field in plan[0]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)  # ASCII: readable in any locale


def _init_for(cls: type[Record], plan: _Plan) -> Callable[..., None]:
    """The class's own __init__, written out field by field as dataclasses writes its own: each given
    value checked, each absent one its default, every problem gathered into one ValidationError. A record
    of a subclass that has not yet had its own goes back to Record.__init__, which writes it."""
    fields, private = plan
    scope: dict[str, Any] = {"_UNSET": _UNSET, "_nested": _nested, "ValidationError": ValidationError,
                             "_owner": cls, "_first": Record.__init__}
    lines = ["def __init__(self, /, **values):",
             "    if type(self) is not _owner:",
             "        return _first(self, **values)",
             "    state, pop, reasons = self.__dict__, values.pop, []"]
    for index, (name, key, alias, required, default, factory, check) in enumerate(fields):
        scope[f"_c{index}"], scope[f"_d{index}"], scope[f"_f{index}"] = check, default, factory
        lines.append(f"    value = pop({key!r}, _UNSET)")
        if alias is not None:
            lines += ["    if value is _UNSET:", f"        value = pop({alias!r}, _UNSET)"]
        lines.append("    if value is _UNSET:")
        if required:
            lines.append(f"        reasons.append(({key!r}, 'field required'))")
        else:
            lines.append(f"        state[{name!r}] = " + (f"_f{index}()" if factory is not None else f"_d{index}"))
        lines += ["    else:", "        try:", f"            state[{name!r}] = _c{index}(value)",
                  "        except ValidationError as exc:",
                  f"            reasons.extend(_nested({key!r}, exc).reasons)"]
    for index, hidden in enumerate(private):
        made = callable(hidden.default_factory)
        scope[f"_p{index}"] = hidden.default_factory if made else hidden.default
        lines.append(f"    state[{hidden.name!r}] = _p{index}" + ("()" if made else ""))
    if cls._extra == "forbid":
        lines += ["    if values:", "        reasons.extend((str(key), 'unknown field') for key in values)"]
    lines += ["    if reasons:", "        raise ValidationError(reasons)"]
    exec("\n".join(lines), scope)  # noqa: S102 - our own text, from the class's field names (identifiers)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _stripped(inner: _Check) -> _Check:
    def check(value: Any) -> Any:
        return inner(value.strip() if type(value) is str else value)
    return check


def _before(first: Callable[[Any], Any], then: _Check) -> _Check:
    def check(value: Any) -> Any:
        try:
            value = first(value)
        except (TypeError, ValueError) as exc:
            raise exc if isinstance(exc, ValidationError) else _invalid(str(exc)) from None
        return then(value)
    return check


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity; a reader's parser would refuse the file
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
