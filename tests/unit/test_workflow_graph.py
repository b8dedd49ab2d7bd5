"""How chains and groups turn into jobs and edges, and what they refuse, without a
database: the positions of each job's parents, the `always` edges of an
``on_failure="run"`` callback, and the document workflow_insert.sql reads."""

from __future__ import annotations

import json

import pytest

import pgq
from pgq import workflows


def spec(name: str) -> pgq.JobSpec:
    return pgq.JobSpec(f"graph.{name}")


def graph(root: workflows.Chain | workflows.Group) -> list[tuple[str, tuple[int, ...], bool]]:
    return [(n.spec.task[6:], n.parents, n.always) for n in workflows._nodes(root)]


def test_a_chain_links_each_step_to_the_one_before() -> None:
    assert graph(pgq.chain(spec("a"), spec("b"), spec("c"))) == [
        ("a", (), False),
        ("b", (0,), False),
        ("c", (1,), False),
    ]


def test_a_group_callback_waits_for_every_member() -> None:
    flow = pgq.group([spec("a"), spec("b")]).then(spec("cb"))
    assert graph(flow) == [("a", (), False), ("b", (), False), ("cb", (0, 1), False)]


def test_on_failure_run_makes_the_callbacks_edges_always() -> None:
    flow = pgq.group([spec("a"), spec("b")]).then(spec("cb"), on_failure="run")
    assert graph(flow)[-1] == ("cb", (0, 1), True)


def test_groups_and_chains_nest() -> None:
    flow = pgq.chain(spec("a"), pgq.group([spec("b"), pgq.chain(spec("c"), spec("d"))]), spec("e"))
    assert graph(flow) == [
        ("a", (), False),
        ("b", (0,), False),
        ("c", (0,), False),
        ("d", (2,), False),
        ("e", (1, 3), False),
    ]


def test_an_empty_group_passes_its_parents_through() -> None:
    assert graph(pgq.chain(spec("a"), pgq.group([]), spec("b"))) == [
        ("a", (), False),
        ("b", (0,), False),
    ]
    assert graph(pgq.group([]).then(spec("cb"))) == [("cb", (), False)]


def test_a_task_call_is_a_step() -> None:
    @pgq.task(name="graph.t", registry=pgq.registry.Registry())
    def t(x: int) -> None: ...

    assert graph(pgq.chain(t.spec(x=1), t.configure(priority=3).spec(x=2)))[1][1] == (0,)


def test_the_document_marks_parents_and_dependents() -> None:
    nodes = workflows._nodes(pgq.chain(spec("a"), spec("b")))
    items = json.loads(workflows._document(nodes, workflows._checked_rows(nodes)))
    assert [(i["task"], i["parents"], i["dependents"]) for i in items] == [
        ("graph.a", [], True),
        ("graph.b", [1], False),
    ]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: pgq.chain(), "at least one step"),
        (lambda: pgq.chain("graph.a"), "must be a JobSpec"),
        (lambda: pgq.group(spec("a")), "takes a list of steps"),
        (lambda: pgq.group([spec("a")]).then(spec("b"), on_failure="skip"), "'cancel' or 'run'"),
        (lambda: pgq.group([spec("a")]).then(pgq.group([spec("b")])), "a callback is one job"),
    ],
)
def test_bad_workflows_are_refused_with_a_clear_error(build: object, message: str) -> None:
    with pytest.raises(pgq.OptionError, match=message):
        build()  # type: ignore[operator]


def test_a_bad_job_is_named_by_its_position() -> None:
    flow = pgq.chain(spec("a"), pgq.JobSpec("graph.b", {"x": float("nan")}))
    with pytest.raises(pgq.ArgsError, match=r"^jobs\[1\]"):
        workflows._checked_rows(workflows._nodes(flow))
