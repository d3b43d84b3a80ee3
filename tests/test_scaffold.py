"""app.scaffold in memory: what `manage.py new-resource` refuses, and what it would write (compiled, not written;
tests/test_new_resource.py writes, migrates and runs it in a copy of the project)."""

from __future__ import annotations

import pytest

from app.scaffold.kinds import KINDS, MAX_FIELD_NAME, MAX_NAME, ScaffoldError
from app.scaffold.resource import call, plan_resource, plural_of, render
from tests.support import PROJECT_DIR

EVERY_KIND = ",".join(f"{kind}_field:{kind}" for kind in KINDS)
# The longest names allowed, each kind: every line written must still fit 120 columns.
LONGEST = ",".join(f"{kind}_{'x' * (MAX_FIELD_NAME - len(kind) - 1)}:{kind}" for kind in KINDS)


@pytest.mark.parametrize(("name", "spec", "says"), [
    ("users", None, "'users' is taken"),
    ("user", None, "'user' is taken"),
    ("file", None, "'file' is taken"),
    ("health", None, "'health' is taken"),
    ("mfa", None, "'mfa' is taken"),
    ("select", None, "'select' is taken"),
    ("Bad-Name", None, "not a lowercase snake_case"),
    ("order__item", None, "not a lowercase snake_case"),
    ("class", None, "Python keyword"),
    ("match", None, "Python keyword"),
    ("task", "title", "give a type"),
    ("task", "title:varchar", "give a type"),
    ("task", "Title:str", "not a lowercase snake_case"),
    ("task", "owner_id:int", "reserved"),
    ("task", "created_at:date", "reserved"),
    ("task", "a:str,a:int", "given twice"),
    ("task", "task:str", "the resource's own name"),
    ("task", ",".join(f"f{i}:int" for i in range(21)), "at most 20"),
    ("x" * (MAX_NAME + 1), None, "longer than"),
    ("task", "x" * (MAX_FIELD_NAME + 1) + ":int", "longer than"),
    ("a", None, "plural 'as' is not"),  # its plural is a keyword
    ("not_found", None, "'NotFound' is a name the generated code uses"),  # the model would shadow app.errors'
    ("get_by_id", None, "'get_by_id' is a name the generated code uses"),
    ("error", None, "the spec already has a model Error"),  # would replace every error answer's schema
    ("profile", None, "the spec already has a model ProfileChanges"),
    ("task", "title:str,utcnow:str", "'utcnow' is a name the generated code uses"),  # created_at's default
    ("task", "title:str,mapped_column:str", "'mapped_column' is a name the generated code uses"),
    ("by_id", None, "would shadow get_by_id"),  # its service's get_by_id would call itself
    ("get_by", None, "would shadow get_by_id"),  # its routes' argument get_by_id would hide the helper
    ("empty", None, "the spec already has a model EmptyEnvelope"),  # its envelope would replace logout's
    ("session_list", None, "the spec already has a model SessionListEnvelope"),
    ("migration", None, "a test module test_migrations.py exists"),  # pytest needs unique basenames
])
def test_a_refused_name_or_field_says_why(name, spec, says):
    with pytest.raises(ScaffoldError, match=says):
        plan_resource(name, spec)



def test_the_unknown_field_the_tests_send_is_never_one_of_its_own():
    assert plan_resource("note", "title:str,colour:int,shade:int").unknown_field == "tint"


@pytest.mark.parametrize(("name", "plural"), [("task", "tasks"), ("box", "boxes"), ("category", "categories"),
                                              ("day_off", "day_offs"), ("key", "keys"), ("batch", "batches")])
def test_plurals(name, plural):
    assert plural_of(name) == plural


def test_every_file_it_would_write_compiles_within_the_line_length():
    resource = plan_resource("order_item", EVERY_KIND)
    texts = render(resource)
    assert {str(path.relative_to(PROJECT_DIR)) for path in texts} == {
        "app/models/order_item.py", "app/services/order_items.py", "app/api/order_items.py",
        "tests/api/test_order_items.py", "app/models/__init__.py", "app/api/__init__.py"}
    for path, text in texts.items():
        compile(text, str(path), "exec")
        assert all(len(line) <= 120 for line in text.splitlines() if not path.name.startswith("test_")), path
    assert 'from app.models.order_item import OrderItem' in texts[PROJECT_DIR / "app/models/__init__.py"]
    assert '(order_items_ns, "/order_items"),\n)' in texts[PROJECT_DIR / "app/api/__init__.py"]
    assert not (PROJECT_DIR / "app/models/order_item.py").exists()  # rendered, not written


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_longest_names_still_fit_120_columns(kind):
    name = f"{kind}_" + "y" * (MAX_NAME - len(kind) - 1)
    for path, text in render(plan_resource(name, LONGEST)).items():
        compile(text, str(path), "exec")
        if not path.name.startswith("test_"):
            assert max(len(line) for line in text.splitlines()) <= 120, path


def test_long_calls_break_under_their_first_argument():
    text = call("return f(", [f"argument_{i}=value" for i in range(12)], ")", 4)
    lines = text.splitlines()
    assert len(lines) > 1 and all(len(line) <= 120 for line in ["    " + lines[0], *lines[1:]])
    assert all(line.startswith(" " * 13 + "argument_") for line in lines[1:])
    assert text.replace("\n" + " " * 13, " ") == "return f(" + ", ".join(f"argument_{i}=value" for i in range(12)) + ")"
