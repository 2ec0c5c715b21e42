"""Access security files: parser, rule semantics and syntax errors (no CA)."""

from __future__ import annotations

import pytest
from caproto import AccessRights
from caproto.server import PVGroup, pvproperty
from hypothesis import given, settings
from hypothesis import strategies as st

from picodaq_ioc.ioc.access import AcfError, apply_acf, load_acf, parse_acf

RW = AccessRights.READ | AccessRights.WRITE
R = AccessRights.READ
NO = AccessRights.NO_ACCESS

EXAMPLE = """
# lab rules
UAG(operators) { alice, "bob smith" }   # quoted names may hold spaces
UAG(experts) {carol}
HAG(lab) { labpc1, "LabPC2.example.org" }
ASG(DEFAULT) {
    RULE(1, READ)
    RULE(1, WRITE, TRAPWRITE) {
        UAG(operators, experts)
    }
}
ASG(EXPERT) {
    RULE(1, READ)
    RULE(1, WRITE) { UAG(experts) HAG(lab) }
}
ASG(HIDDEN) { RULE(0, NONE) }
ASG(EMPTY)
"""


def test_parse_example_groups() -> None:
    acf = parse_acf(EXAMPLE, "lab.acf")
    assert acf.uags == {"operators": frozenset({"alice", "bob smith"}), "experts": frozenset({"carol"})}
    assert acf.hags == {"lab": frozenset({"labpc1", "labpc2.example.org"})}
    assert list(acf.asgs) == ["DEFAULT", "EXPERT", "HIDDEN", "EMPTY"]
    rule = acf.asgs["DEFAULT"][1]
    assert (rule.level, rule.access, rule.uags, rule.trapwrite, rule.line) == (
        1, "WRITE", ("operators", "experts"), True, 8)


def test_rule_semantics() -> None:
    acf = parse_acf(EXAMPLE)
    # DEFAULT: everyone reads, listed users write from any host
    assert acf.rights("DEFAULT", "anyhost", "alice") == RW
    assert acf.rights("DEFAULT", "anyhost", "bob smith") == RW
    assert acf.rights("DEFAULT", "anyhost", "mallory") == R
    assert acf.rights("DEFAULT", None, None) == R
    # user names are case sensitive (as in EPICS)
    assert acf.rights("DEFAULT", "anyhost", "Alice") == R
    # EXPERT: UAG and HAG must both match; host names compare case-insensitively
    assert acf.rights("EXPERT", "LABPC1", "carol") == RW
    assert acf.rights("EXPERT", "labpc2.example.org", "carol") == RW
    assert acf.rights("EXPERT", "otherpc", "carol") == R
    assert acf.rights("EXPERT", "labpc1", "alice") == R
    # NONE rule and a group without rules give nothing
    assert acf.rights("HIDDEN", "labpc1", "carol") == NO
    assert acf.rights("EMPTY", "labpc1", "carol") == NO
    # unknown group -> DEFAULT
    assert acf.rights("NOSUCH", "x", "alice") == RW


def test_missing_default_means_no_access(caplog: pytest.LogCaptureFixture) -> None:
    acf = parse_acf("ASG(OTHER) { RULE(1, WRITE) }")
    assert "no ASG(DEFAULT)" in caplog.text
    assert acf.rights("DEFAULT", "h", "u") == NO
    assert acf.rights("OTHER", "h", "u") == RW


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("UAG(a) { x, y\nASG(DEFAULT) {}", 2, "expected ',' or '}'"),
        ("ASG(DEFAULT) {\n  RULE(1, WRIT)\n}", 2, "unknown access 'WRIT'; allowed: NONE, READ, WRITE, RPC"),
        ("ASG(DEFAULT) {\n\n  RULE(2, READ)\n}", 3, "level must be 0 or 1"),
        ("ASG(DEFAULT) {\n  RULE(1, WRITE) {\n    UAG(nobody)\n  }\n}", 3, "UAG(nobody) is used but not defined"),
        ("HAG(h) {a}\nASG(DEFAULT) {\n  RULE(1, WRITE) { HAG(h, g) }\n}", 3, "HAG(g) is used but not defined"),
        ('UAG(u) { "alice }\n', 1, "unterminated quoted string"),
        ("ASG(DEFAULT) {\n  INP(A, \"PV:X\")\n}", 2, "'INP' is not supported inside ASG; allowed: INPA"),
        ("ASG(DEFAULT) {\n  RULE(1, READ) { CALC(\"A=1\") }\n}", 2, "uses A but ASG(DEFAULT) has no INPA"),
        ("ASG(DEFAULT) {\n  RULE(1, READ, TRAP)\n}", 2, "unknown rule option 'TRAP'"),
        ("\n\nFOO(x)", 3, "'FOO' is not supported here; allowed at the top level: UAG, HAG, AUTHORITY, ASG"),
        ("UAG(a)\nUAG(a)", 2, "UAG(a) defined twice"),
        ("ASG(DEFAULT) {\n RULE(1, READ)\n", 3, "ASG(DEFAULT) is not closed"),
        ("ASG(DEFAULT) { RULE(1 READ) }", 1, "expected ','"),
        ("UAG(a) { x ! }", 1, "unexpected character '!'"),
        ("RULE(1, READ)", 1, "only allowed inside an ASG"),
        ("ASG(DEFAULT) { RULE(1, WRITE) { UAG() } }", 1, "needs at least one group name"),
    ],
)
def test_syntax_errors_name_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(AcfError) as ei:
        parse_acf(text, "bad.acf")
    assert ei.value.line == line, str(ei.value)
    assert fragment in str(ei.value)
    assert str(ei.value).startswith(f"bad.acf:{line}: ")


def test_load_missing_file(tmp_path) -> None:
    with pytest.raises(AcfError, match="not found"):
        load_acf(tmp_path / "nope.acf")


def test_example_file_in_configs_parses() -> None:
    from reliability_helpers import REPO

    acf = load_acf(REPO / "configs" / "example.acf")
    assert "DEFAULT" in acf.asgs
    # the documented behaviour of the example: operators write, others only read
    assert acf.rights("DEFAULT", "localhost", "operator") == RW
    assert acf.rights("DEFAULT", "localhost", "guest") == R


_junk = st.lists(
    st.sampled_from(["UAG", "HAG", "ASG", "RULE", "(", ")", "{", "}", ",", "READ", "WRITE", "NONE",
                     "1", "0", "2", "DEFAULT", "a", '"q q"', "#c\n", "\n", "INP", "CALC", "TRAPWRITE", '"',
                     "!", "UAG(a)", "HAG(h){x}"]),
    max_size=40,
).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(text=_junk | st.text(max_size=200))
def test_junk_never_crashes(text: str) -> None:
    """Any input either parses or raises AcfError with a line number - nothing else."""
    try:
        acf = parse_acf(text, "junk.acf")
    except AcfError as exc:
        assert exc.line is not None and 1 <= exc.line <= text.count("\n") + 1
    else:
        for asg in acf.asgs:
            acf.rights(asg, "h", "u")


class _Group(PVGroup):
    setting = pvproperty(value=1.0)
    readback = pvproperty(value=2.0, read_only=True)
    admin = pvproperty(value=0)


def test_apply_acf_intersects_with_read_only() -> None:
    grp = _Group(prefix="T:")
    acf = parse_acf("UAG(ops){alice}\nASG(DEFAULT){RULE(1,READ) RULE(1,WRITE){UAG(ops)}}\n"
                    "ASG(ADMIN){RULE(1,READ)}")
    applied = apply_acf(grp.pvdb, acf, {"T:adm*": "ADMIN"})
    assert applied == {"T:setting": "DEFAULT", "T:readback": "DEFAULT", "T:admin": "ADMIN"}
    db = grp.pvdb
    assert db["T:setting"].check_access("h", "alice") == RW
    assert db["T:setting"].check_access("h", "eve") == R
    assert db["T:readback"].check_access("h", "alice") == R  # read-only stays read-only
    assert db["T:admin"].check_access("h", "alice") == R
