"""What ``--fields`` may ask for: field names, and the types each becomes in the model, the API and the tests."""

from __future__ import annotations

import ast
import keyword
import re
from dataclasses import dataclass

IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
# Characters of a resource's and a field's name: every line written fits ruff's 120 columns.
MAX_NAME, MAX_FIELD_NAME = 18, 30
DEFAULT_FIELDS = "title:str"
MAX_FIELDS = 20
# Names the generated modules use themselves, or the columns every resource has.
RESERVED_FIELDS = frozenset({"id", "owner", "owner_id", "created_at", "updated_at", "date", "user", "given",
                             "paging", "query", "metadata", "registry", "self", "ns", "fields", "db"})
# Names (singular or plural) that the generated modules import or use for something else.
RESERVED_NAMES = frozenset({"select", "query", "owner", "paging", "given", "fields", "ns", "day", "date", "datetime",
                            "any", "paginate", "db", "utcnow", "resource", "namespace", "pytest"})


class ScaffoldError(Exception):
    """A name or field refused, or a project that is not as the generator expects; nothing was written."""


@dataclass(frozen=True)
class Kind:
    """What a type of ``--fields`` becomes. ``{limit}`` in a snippet stands for the field's length constant,
    ``{words}`` for its name in words;
    ``default`` is None for a field required on create; values are Python source, for the tests."""

    python: str
    column: str
    output: str
    new: str
    change: str
    default: str | None
    samples: tuple[str, str]
    invalid: tuple[str, ...]
    max_length: int | None = None


KINDS = {
    "str": Kind("str", "String({limit})", "fields.String(required=True)",
                "fields.String(required=True, min_length=1, max_length={limit})",
                "fields.String(min_length=1, max_length={limit})", None, ('"a {words}"', '"another {words}"'),
                ('""', '"x" * 201', "5"), max_length=200),
    "text": Kind("str", "Text", "fields.String(required=True)", 'fields.String(max_length={limit}, default="")',
                 "fields.String(max_length={limit})", '""', ('"some text"', '"other text"'), ('"x" * 10_001', "5"),
                 max_length=10_000),
    "bool": Kind("bool", "Boolean", "fields.Boolean(required=True)", "fields.Boolean(default=False)",
                 "fields.Boolean()", "False", ("True", "False"), ('"yes"', "1")),
    "int": Kind("int", "Integer", "fields.Integer(required=True)", "whole_number(default=0)", "whole_number()",
                "0", ("7", "8"), ("2**31", '"7"', "1.5")),
    "date": Kind("date | None", "Date", "NullableDate(required=True)", "Day()", "Day()", "None",
                 ('"2030-01-31"', '"2031-12-01"'), ('"2030-02-30"', '"tomorrow"')),
}


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    type: str

    @property
    def limit(self) -> str:
        return f"{self.name.upper()}_MAX_LENGTH"

    def _fill(self, snippet: str) -> str:
        return snippet.format(limit=self.limit, words=self.name.replace("_", " "))

    @property
    def column(self) -> str:
        return self._fill(self.kind.column)

    @property
    def output(self) -> str:
        return self._fill(self.kind.output)

    @property
    def new(self) -> str:
        return self._fill(self.kind.new)

    @property
    def change(self) -> str:
        return self._fill(self.kind.change)

    @property
    def required(self) -> bool:
        return self.kind.default is None

    @property
    def optional_type(self) -> str:
        return self.kind.python if self.kind.python.endswith("None") else f"{self.kind.python} | None"

    @property
    def param(self) -> str:
        return f"{self.name}: {self.kind.python}"

    @property
    def optional_param(self) -> str:
        return f"{self.name}: {self.optional_type} = None"

    @property
    def keyword(self) -> str:
        return f"{self.name}={self.name}"

    @property
    def given(self) -> str:
        """The namespace's argument on create, from the body ``given``."""
        if self.type == "date":
            return f'{self.name}=day(given.get("{self.name}"))'
        if self.required:
            return f'{self.name}=given["{self.name}"]'
        return f'{self.name}=given.get("{self.name}", {self.kind.default})'

    @property
    def changed(self) -> str:
        """The namespace's argument on patch."""
        value = f'given.get("{self.name}")'
        return f"{self.name}={'day(' + value + ')' if self.type == 'date' else value}"

    @property
    def max_length(self) -> str:
        """The length limit as Python source (``10_000``)."""
        return f"{self.kind.max_length:_}"

    @property
    def samples(self) -> tuple[str, str]:
        first, second = self.kind.samples
        return self._fill(first), self._fill(second)


def check_identifier(name: str, what: str, longest: int) -> None:
    if not IDENTIFIER.fullmatch(name) or keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ScaffoldError(f"{what} {name!r} is not a lowercase snake_case Python identifier (e.g. order_item), "
                            "or is a Python keyword")
    if len(name) > longest:
        raise ScaffoldError(f"{what} {name!r} is longer than {longest} characters")


def parse_fields(spec: str) -> tuple[Field, ...]:
    """``title:str,body:text`` → the fields; ScaffoldError naming the first that is refused."""
    found: list[Field] = []
    for item in (part.strip() for part in spec.split(",")):
        name, colon, type_ = item.partition(":")
        check_identifier(name, "field", MAX_FIELD_NAME)
        if not colon or type_ not in KINDS:
            raise ScaffoldError(f"field {name!r}: give a type, one of {', '.join(KINDS)} (e.g. {name}:str)")
        if name in RESERVED_FIELDS:
            raise ScaffoldError(f"field {name!r} is reserved: one of {', '.join(sorted(RESERVED_FIELDS))} (columns "
                                "every resource has, or names its code uses)")
        if any(field.name == name for field in found):
            raise ScaffoldError(f"field {name!r} is given twice")
        found.append(Field(name, KINDS[type_], type_))
    if len(found) > MAX_FIELDS:
        raise ScaffoldError(f"at most {MAX_FIELDS} fields")
    return tuple(found)


def shadowed_names(text: str, arguments: bool = True) -> set[str]:
    """Names a module binds twice at its top level (an import and a def, two defs), or (with ``arguments``) that a
    function's argument hides from the function's body. A test module's arguments are fixtures, named as their
    functions on purpose."""
    tree = ast.parse(text)
    bound: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            bound += [(alias.asname or alias.name).split(".")[0] for alias in node.names]
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            bound.append(node.name)
        elif isinstance(node, ast.Assign):
            bound += [target.id for target in node.targets if isinstance(target, ast.Name)]
    module = set(bound)
    twice = {name for name in module if bound.count(name) > 1}
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    hidden = {arg.arg for node in functions for arg in (*node.args.args, *node.args.kwonlyargs)
              if arguments and arg.arg in module}
    return twice | hidden
