"""The one grammar of run references, ``${a.b}``, and its typed parser."""

from __future__ import annotations

import pytest

from envkit.blueprint import refs
from envkit.blueprint.refs import BadRef, PortRef, Ref, RunRef, ServiceRef


@pytest.mark.parametrize(("body", "ref"), [
    ("run.id", RunRef("id")),
    ("run.name", RunRef("name")),
    ("services.api.host", ServiceRef("api", "host")),
    ("services.my-db.name", ServiceRef("my-db", "name")),
    ("services.api.ports.8080", PortRef("api", 8080)),
])
def test_parse_gives_a_typed_reference(body: str, ref: Ref) -> None:
    assert refs.is_ref(body)
    assert refs.parse(body) == ref


@pytest.mark.parametrize(("body", "message", "service"), [
    ("run.idd", "unknown reference '${run.idd}' (use ${run.id})", None),
    ("run.id.x", "unknown reference '${run.id.x}' (use ${run.id})", None),
    ("services.api", "unknown reference '${services.api}' (use ${services.NAME.host} or ${services.NAME.ports.PORT})",
     None),
    ("db.host", "unknown reference '${db.host}' (use ${services.NAME.host} or ${services.NAME.ports.PORT})", None),
    ("services.api.port.80", "unknown reference '${services.api.port.80}' "
                             "(use ${services.api.host} or ${services.api.ports.PORT})", "api"),
    ("services.api.ports.http", "unknown reference '${services.api.ports.http}' "
                                "(use ${services.api.host} or ${services.api.ports.PORT})", "api"),
])
def test_other_shapes_are_bad_references(body: str, message: str, service: str | None) -> None:
    assert refs.is_ref(body)  # the grammar is the same; only the shape is wrong
    with pytest.raises(BadRef) as err:
        refs.parse(body)
    assert str(err.value) == message
    assert err.value.service == service


@pytest.mark.parametrize("body", ["VAR", "VAR:-a.b", "1x.y", "a.", ".a", "a b.c", "a.b\nc"])
def test_a_body_without_the_shape_is_not_a_reference(body: str) -> None:
    assert not refs.is_ref(body)


def test_services_in_and_substitute() -> None:
    template = "http://${services.api.host}:${services.api.ports.8080}/${run.id}?db=${services.db.name}&x=${X}"
    assert refs.services_in(template) == {"api", "db"}
    assert refs.services_in("${services.x.bogus} ${run.id}") == {"x"}

    def value(ref: Ref) -> str:
        if isinstance(ref, RunRef):
            return "RUN"
        if isinstance(ref, PortRef):
            return str(ref.port + 1)
        return f"{ref.service}-{ref.attr}"

    assert refs.substitute(template, value) == "http://api-host:8081/RUN?db=db-name&x=${X}"
    with pytest.raises(BadRef):
        refs.substitute("${run.nope}", value)
