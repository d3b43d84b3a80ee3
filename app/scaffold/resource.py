"""A new resource's files: its name and fields checked, every file rendered in memory from templates/, then
written all at once (and taken back, should its migration fail)."""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from app import models
from app.api import NAMESPACES
from app.api.envelope import error_model
from app.config import PROJECT_DIR
from app.extensions import db
from app.scaffold.kinds import (
    DEFAULT_FIELDS,
    KINDS,
    MAX_NAME,
    RESERVED_NAMES,
    Field,
    ScaffoldError,
    check_identifier,
    parse_fields,
    shadowed_names,
)

LINE = 120  # ruff's line-length
TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Resource:
    """NAME ``order_item``: model OrderItem, table, service, namespace and path ``order_items``."""

    name: str
    fields: tuple[Field, ...]

    @property
    def plural(self) -> str:
        return plural_of(self.name)

    @property
    def unknown_field(self) -> str:
        """A name the tests send as a field the body does not name: none of the resource's own."""
        names = {field.name for field in self.fields}
        return next(name for name in ("colour", "shade", "tint", "hue", "tone") if name not in names)

    @property
    def model(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("_"))

    @property
    def words(self) -> str:
        return self.name.replace("_", " ")

    @property
    def plural_words(self) -> str:
        return self.plural.replace("_", " ")

    @property
    def kinds(self) -> set[str]:
        return {field.type for field in self.fields}

    @property
    def limits(self) -> list[Field]:
        """The fields with a length limit (a constant in the model's module)."""
        return [field for field in self.fields if field.kind.max_length]

    @property
    def column_types(self) -> list[str]:
        """What the model imports from sqlalchemy, in isort's order."""
        names = {"DateTime", "ForeignKey", "Integer"} | {field.kind.column.split("(")[0] for field in self.fields}
        return sorted(names, key=str.lower)

    @property
    def files(self) -> dict[str, str]:
        """Each new file's path in the project, by template."""
        return {"model.py.jinja": f"app/models/{self.name}.py", "service.py.jinja": f"app/services/{self.plural}.py",
                "namespace.py.jinja": f"app/api/{self.plural}.py", "test.py.jinja": f"tests/api/test_{self.plural}.py"}


def plural_of(name: str) -> str:
    if re.search(r"(s|x|z|ch|sh)$", name):
        return name + "es"
    if re.search(r"[^aeiou]y$", name):
        return name[:-1] + "ies"
    return name + "s"


def taken_names() -> set[str]:
    """What a new resource may not be called: the modules of models, services and api, the namespaces and their
    paths, the tables and the models."""
    names = {path.stem for part in ("models", "services", "api") for path in (PROJECT_DIR / "app" / part).glob("*.py")}
    for namespace, path in NAMESPACES:
        names |= {namespace.name, *path.strip("/").split("/")}
    for table in db.metadata.tables.values():
        names.add(table.name)
    names |= {model.lower() for model in models.__all__}
    return names


PLACEHOLDER = "zq"  # in the names of a resource rendered only to learn the names the templates use themselves


@functools.cache
def template_names() -> dict[str, frozenset[str]]:
    """The names the generated modules use for things of their own (imports, helpers, locals, arguments, and the
    attributes read on a model), by template, learnt by rendering a resource whose own names all hold PLACEHOLDER:
    a new resource, its model or a field by one of these names would shadow one."""
    sample = Resource(f"{PLACEHOLDER}_item", tuple(Field(f"{PLACEHOLDER}_{kind}", KINDS[kind], kind) for kind in KINDS))
    texts = render(sample)
    found: dict[str, frozenset[str]] = {}
    for template, path in sample.files.items():
        names: set[str] = set()
        for node in ast.walk(ast.parse(texts[PROJECT_DIR / path])):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
        found[template] = frozenset(name for name in names if PLACEHOLDER not in name.lower())
    return found


def schema_names() -> set[str]:
    """The names of the models the specs already define (a new one by the same name would replace it)."""
    return {name for namespace, _ in NAMESPACES for name in namespace.models} | {error_model.name}


def plan_resource(name: str, spec: str | None = None) -> Resource:
    """The resource NAME with fields ``spec`` (``title:str`` when None), or ScaffoldError saying why not."""
    check_identifier(name, "NAME", MAX_NAME)
    resource = Resource(name, parse_fields(spec or DEFAULT_FIELDS))
    check_identifier(resource.plural, "NAME's plural", MAX_NAME + 3)
    taken = taken_names() | RESERVED_NAMES
    for candidate in (name, resource.plural):
        if candidate in taken:
            raise ScaffoldError(f"NAME {name!r}: {candidate!r} is taken (a module, namespace, table or model)")
    used = template_names()
    everywhere = frozenset().union(*used.values())
    where_fields_are_names = used["model.py.jinja"] | used["service.py.jinja"]  # columns, attributes, arguments
    for candidate, names in ((name, everywhere), (resource.plural, everywhere), (resource.model, everywhere),
                             *((field.name, where_fields_are_names) for field in resource.fields)):
        if candidate in names:
            raise ScaffoldError(f"{candidate!r} is a name the generated code uses for something else: choose another")
    # The namespace's models are <Model>, New<Model>, <Model>Changes and envelopes named <Model>…Envelope/Page.
    clashes = sorted(existing for existing in schema_names() for ours in (resource.model, f"New{resource.model}")
                     if existing == ours or (existing.startswith(ours) and existing[len(ours)].isupper()))
    if clashes:
        raise ScaffoldError(f"NAME {name!r}: the spec already has a model {', '.join(clashes)}")
    test_module = Path(resource.files["test.py.jinja"]).name
    if any((PROJECT_DIR / "tests").rglob(test_module)):
        raise ScaffoldError(f"NAME {name!r}: a test module {test_module} exists already (pytest needs unique names)")
    for path, text in render(resource).items():
        shadowed = shadowed_names(text, arguments=not path.name.startswith("test_"))
        if shadowed:
            raise ScaffoldError(f"NAME {name!r}: in {path.relative_to(PROJECT_DIR)} it would shadow "
                                f"{', '.join(sorted(shadowed))}: choose another")
    if any(field.name == name for field in resource.fields):
        raise ScaffoldError(f"field {name!r}: the resource's own name")
    existing = [path for path in resource.files.values() if (PROJECT_DIR / path).exists()]
    if existing:
        raise ScaffoldError(f"NAME {name!r}: {', '.join(existing)} exist already")
    return resource


def render(resource: Resource) -> dict[Path, str]:
    """Every file the resource adds or changes, by path, as it will be written."""
    environment = jinja2.Environment(  # noqa: S701 - it writes Python, not HTML
        loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True, trim_blocks=True,
        lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    environment.globals["call"] = call
    environment.filters["fit"] = fit
    environment.globals["import_line"] = import_line
    texts = {PROJECT_DIR / path: environment.get_template(template).render(r=resource)
             for template, path in resource.files.items()}
    texts[PROJECT_DIR / "app/models/__init__.py"] = registered_model(resource)
    texts[PROJECT_DIR / "app/api/__init__.py"] = registered_namespace(resource)
    return texts


def call(head: str, parts: Iterable[str], tail: str, indent: int = 0) -> str:
    """``head``, the ``parts`` joined by ", ", then ``tail``, broken before a part that would pass column 120 and
    continued under the first part, or, when even that is too far right, on lines of their own four columns in
    (``indent``: the columns before ``head``)."""
    parts = list(parts)
    align = indent + head.find("(") + 1
    lines, line = [], " " * indent + head
    if align + max(map(len, parts)) + len(tail) + 1 > LINE:
        align = indent + 4
        lines, line = [line.rstrip()], " " * align
    for i, part in enumerate(parts):
        piece = part + (", " if i < len(parts) - 1 else tail)
        if len(line) + len(piece.rstrip()) > LINE and line.strip():
            lines.append(line.rstrip())
            line = " " * align
        line += piece
    return "\n".join([*lines, line])[indent:]


def import_line(module: str, names: Iterable[str]) -> str:
    """``from module import names`` on one line, or as isort writes it when that passes column 120."""
    names = list(names)
    line = f"from {module} import {', '.join(names)}"
    return line if len(line) <= LINE else f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")"


def fit(line: str, indent: int = 4) -> str:
    """A one-line call that would pass column 120, broken as ``call`` breaks one."""
    if indent + len(line) <= LINE:
        return line
    opening, closing = line.index("("), line.rindex(")")
    return call(line[:opening + 1], line[opening + 1:closing].split(", "), line[closing:], indent)


def _insert_sorted(lines: list[str], new: str, prefix: str) -> list[str]:
    """``lines`` with ``new`` among the consecutive lines starting with ``prefix``, in sorted order (as isort)."""
    first = next(i for i, line in enumerate(lines) if line.startswith(prefix))
    last = first
    while last < len(lines) and lines[last].startswith(prefix):
        last += 1
    return [*lines[:first], *sorted([*lines[first:last], new]), *lines[last:]]


def registered_model(resource: Resource) -> str:
    """app/models/__init__.py importing the new model (autogenerate sees only the models imported there)."""
    text = (PROJECT_DIR / "app/models/__init__.py").read_text()
    found = re.search(r"^__all__ = \[(.*)\]$", text, re.M)
    if found is None:
        raise ScaffoldError("app/models/__init__.py has no one-line __all__ = [...]: add the model by hand")
    names = sorted([*re.findall(r'"(\w+)"', found[1]), resource.model])
    text = text.replace(found[0], "__all__ = [" + ", ".join(f'"{name}"' for name in names) + "]")
    lines = _insert_sorted(text.splitlines(), f"from app.models.{resource.name} import {resource.model}",
                           "from app.models.")
    return "\n".join(lines) + "\n"


def registered_namespace(resource: Resource) -> str:
    """app/api/__init__.py importing the new namespace and listing it last in NAMESPACES."""
    text = (PROJECT_DIR / "app/api/__init__.py").read_text()
    found = re.search(r"^NAMESPACES: .*= \(\n(?:    .*\n)*\)$", text, re.M)
    if found is None:
        raise ScaffoldError("app/api/__init__.py has no NAMESPACES tuple as expected: register the namespace by hand")
    entry = f'    ({resource.plural}_ns, "/{resource.plural}"),\n'
    text = text.replace(found[0], found[0][:-1] + entry + ")")
    lines = _insert_sorted(text.splitlines(), f"from app.api.{resource.plural} import ns as {resource.plural}_ns",
                           "from app.api.")
    return "\n".join(lines) + "\n"


def write(texts: dict[Path, str]) -> dict[Path, str | None]:
    """Write every file; what each held before (None: it was new), for ``undo``. A directory missing (a project
    laid out otherwise) is a ScaffoldError before anything is written."""
    missing = sorted({str(path.parent.relative_to(PROJECT_DIR)) for path in texts if not path.parent.is_dir()})
    if missing:
        raise ScaffoldError(f"the project has no {', '.join(missing)}: new-resource writes there")
    before = {path: path.read_text() if path.exists() else None for path in texts}
    try:
        for path, text in texts.items():
            path.write_text(text)
    except OSError as exc:
        undo(before)
        raise ScaffoldError(f"cannot write {exc.filename}: {exc.strerror}") from None
    return before


def undo(before: dict[Path, str | None]) -> None:
    """Put back what ``write`` changed."""
    for path, text in before.items():
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)
