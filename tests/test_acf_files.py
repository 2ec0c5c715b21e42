"""Access security files in the style of real facilities (tests/acf/*.acf) with EPICS base's
full syntax: INP<A-L> + CALC on the IOC's own PVs, macros with and without defaults,
METHOD/AUTHORITY/PROTOCOL (base 7.0.9), UAG/HAG lists, levels; anything unsupported is refused
naming the line; and one file enforced over CA with the real ``caput``."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
from caproto import AccessRights

from picodaq_ioc.ioc.acf import AcfError, compile_calc, load_acf, parse_acf, parse_macros

ACF_DIR = Path(__file__).resolve().parent / "acf"
FILES = sorted(ACF_DIR.glob("*.acf"))
MACROS = {"P": "PICO:", "MCR_USER": "bessyop1"}
NO, R, RW = AccessRights.NO_ACCESS, AccessRights.READ, AccessRights.READ | AccessRights.WRITE


class Inputs:
    """Stand-in PV values for the INP links: {pvname: (value, invalid)}."""

    def __init__(self, **values: float) -> None:
        self.values = {f"PICO:{k.replace('__', ':')}": (float(v), False) for k, v in values.items()}

    def readers(self, acf):
        return {pv: (lambda pv=pv: self.values.get(pv)) for pv in acf.input_pvs()}


def load(name: str, **inputs: float):
    acf = load_acf(ACF_DIR / name, MACROS)
    box = Inputs(**inputs)
    acf.bind(box.readers(acf))
    return acf, box


def test_there_are_eight_facility_style_files():
    assert len(FILES) >= 8


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_file_parses(path):
    acf = load_acf(path, MACROS)
    assert "DEFAULT" in acf.groups
    assert all(g.rules for g in acf.groups.values() if g.name == "DEFAULT")


def test_aps_operators_in_the_control_room_and_engineers_by_calc():
    acf, box = load("aps_style.acf", NumEvents=10)
    assert acf.groups["DEFAULT"].inputs == {"A": ("PICO:NumEvents", 7)}  # nested default macro
    assert acf.rights("DEFAULT", "MCR-OPI1", "oag") == RW  # host names compare case-insensitively
    assert acf.rights("DEFAULT", "mcr-opi3", "beam ops") == RW
    assert acf.rights("DEFAULT", "office", "oag") == R
    assert acf.rights("DEFAULT", "anywhere", "jdoe") == RW  # A=10 < 100
    box.values["PICO:NumEvents"] = (500.0, False)
    assert acf.rights("DEFAULT", "anywhere", "jdoe") == R  # evaluated now, not cached
    box.values["PICO:NumEvents"] = (5.0, True)  # INVALID alarm: the CALC is false
    assert acf.rights("DEFAULT", "anywhere", "jdoe") == R
    assert acf.rights("EXPERT", "anywhere", "jdoe") == RW
    assert acf.rights("EXPERT", "mcr-opi1", "oag") == R
    assert acf.groups["DEFAULT"].rules[1].trapwrite


def test_dls_host_and_user_lists():
    acf, _ = load("dls_style.acf")
    assert acf.rights("DEFAULT", "i15-ws001", "i15user") == RW
    assert acf.rights("DEFAULT", "i15-control", "ctrl1") == RW
    assert acf.rights("DEFAULT", "elsewhere", "i15user") == R
    assert acf.rights("READONLY", "i15-ws001", "i15user") == R
    assert acf.rights("LOCKED", "i15-ws001", "i15user") == NO
    assert acf.rights("NOSUCH", "i15-ws001", "i15user") == RW  # unknown group -> DEFAULT


def test_sns_linac_example_with_two_inputs_and_levels():
    acf, box = load("sns_style.acf", Acquire_RBV=1, NumEvents=0)
    assert acf.rights("DEFAULT", "silver", "op1") == RW  # A=1
    box.values["PICO:Acquire_RBV"] = (0.0, False)
    assert acf.rights("DEFAULT", "gaea", "waw") == RW  # linac in icr, A=0
    box.values["PICO:Acquire_RBV"] = (1.0, False)
    assert acf.rights("DEFAULT", "gaea", "waw") == R
    # level-1 fields (record fields) need B=1 for supervisors, level 0 does not
    assert acf.rights("DEFAULT", "anywhere", "gsm", asl=1) == R
    box.values["PICO:NumEvents"] = (1.0, False)
    assert acf.rights("DEFAULT", "anywhere", "gsm", asl=1) == RW
    assert acf.rights("DEFAULT", "ioclic2", "nobody") == RW
    assert acf.rights("critical", "ioclic2", "nobody") == R


def test_nsls2_macro_group_names_and_empty_groups():
    acf, _ = load("nsls2_style.acf")
    assert acf.uags["operators"] == frozenset({"xf15op"}) and acf.uags["nobody"] == frozenset()
    assert acf.rights("DEFAULT", "xf15id-ws1", "xf15op") == RW
    assert acf.rights("EXPERT", "xf15id-ws2", "anyone") == R
    assert acf.rights("EXPERT", "office", "xf15op") == NO
    other = load_acf(ACF_DIR / "nsls2_style.acf", {"UAG_NAME": "staff", "OPERATOR": "carol"})
    assert other.uags == {"staff": frozenset({"carol"}), "nobody": frozenset()}


def test_ess_method_protocol_and_authority_for_channel_access_clients():
    acf, _ = load("ess_style.acf")
    assert acf.authorities == {"AUTH_ESS_ROOT": "ESS Root Certificate Authority",
                               "ESS Intermediate CA": "ESS Intermediate CA",
                               "AUTH_ESS_CTRL": "ESS Control System CA"}
    assert acf.rights("DEFAULT", "h", "alice") == RW  # METHOD(ca) PROTOCOL(TCP): a CA client
    assert acf.rights("DEFAULT", "h", "mallory") == R
    assert acf.rights("DEFAULT", "h", "alice", method="anonymous") == R
    # the x509 rule needs a certificate authority, which a CA client never has
    assert acf.rights("DEFAULT", "h", "mallory", method="x509", protocol="tls") == NO


def test_bessy_macros_without_default_and_calc_functions():
    acf, box = load("bessy_style.acf", Stats__Events_RBV=3, NumEvents=10)
    assert acf.uags["mcr"] == frozenset({"bessyop1", "bessyop"})
    assert acf.rights("DEFAULT", "h", "bessyop") == RW  # 3 < 10
    box.values["PICO:Stats:Events_RBV"] = (10.0, False)
    assert acf.rights("DEFAULT", "h", "bessyop") == R
    box.values["PICO:NumEvents"] = (0.0, False)  # unlimited run
    assert acf.rights("DEFAULT", "h", "bessyop") == RW
    with pytest.raises(AcfError) as ei:
        load_acf(ACF_DIR / "bessy_style.acf", {"P": "PICO:"})
    assert ei.value.line == 3 and "$(MCR_USER)" in ei.value.problem


def test_cls_hosts_only_and_sls_levels_and_rpc():
    acf, _ = load("cls_style.acf")
    assert acf.rights("DEFAULT", "OPI1608-101", "x") == RW
    assert acf.rights("EXPERT", "opi1608-101", "x") == R
    assert acf.rights("EXPERT", "ioc-admin", "x") == RW
    acf, _ = load("sls_style.acf")
    assert acf.rights("DEFAULT", "h", "slsop") == RW
    assert acf.rights("DEFAULT", "h", "slsop", asl=1) == R  # operators: VAL-like fields only
    assert acf.rights("DEFAULT", "h", "expert1", asl=1) == RW
    assert acf.rights("DEFAULT", "h", "sls op") == RW  # quoted user name with a space


@pytest.mark.parametrize("expr, values, result", [
    ("A=1", {"A": 1}, 1), ("A#1", {"A": 1}, 0), ("A<B && B!=0", {"A": 1, "B": 2}, 1),
    ("A>=2 || !B", {"A": 1, "B": 0}, 1), ("(A+B)*2-1", {"A": 1, "B": 2}, 5), ("A^2", {"A": 3}, 9),
    ("A ? B : C", {"A": 0, "B": 5, "C": 7}, 7), ("MAX(A,B,C)", {"A": 1, "B": 9, "C": 3}, 9),
    ("ABS(A)+SQRT(B)", {"A": -2, "B": 16}, 6), ("A AND 6", {"A": 3}, 2), ("-A+L", {"A": 1, "L": 3}, 2),
])
def test_calc_expressions(expr, values, result):
    fn, used = compile_calc(expr)
    assert used == frozenset(values)
    assert fn(values) == pytest.approx(result)


@pytest.mark.parametrize("text, line, fragment", [
    ('SAG(iocs) { IP(10.0.0.0/8) }', 1, "'SAG' is not supported here"),
    ('ASG(DEFAULT) {\n  RULE(1, WRITE) {\n    SAG(iocs)\n  }\n}', 3, "'SAG' is not supported inside RULE"),
    ('ASG(DEFAULT) {\n  INPA(X)\n  RULE(1, WRITE) { CALC("A=") }\n}', 3, "CALC('A='): unexpected end"),
    ('ASG(DEFAULT) {\n  INPA(X)\n  RULE(1, WRITE) { CALC("VAL=1") }\n}', 3, "not allowed in an access security CALC"),
    ('ASG(DEFAULT) {\n  INPM(X)\n}', 2, "inputs are INPA ... INPL"),
    ('ASG(DEFAULT) {\n  RULE(1, READ) { METHOD(kerberos) }\n}', 2, "METHOD 'kerberos'"),
    ('ASG(DEFAULT) {\n  RULE(1, READ) { PROTOCOL(udp) }\n}', 2, "PROTOCOL 'udp'"),
    ('ASG(DEFAULT) {\n  RULE(1, READ) { AUTHORITY(NOPE) }\n}', 2, "AUTHORITY(NOPE) is used but not defined"),
    ('\nUAG(u) { $(WHO) }', 2, "macro $(WHO) has no value"),
    ('ASG(DEFAULT) {\n  INPA(X)\n  RULE(1, READ) { CALC("A=1") CALC("A=2") }\n}', 3, "CALC given twice"),
])
def test_unsupported_or_wrong_is_refused_naming_the_line(text, line, fragment):
    with pytest.raises(AcfError) as ei:
        parse_acf(text, "site.acf")
    assert ei.value.line == line and ei.value.filename == "site.acf", str(ei.value)
    assert fragment in str(ei.value)
    assert str(ei.value).startswith(f"site.acf:{line}: ")


def test_an_input_that_is_no_pv_of_this_ioc_is_refused_naming_the_line():
    acf = parse_acf('ASG(DEFAULT) {\n  RULE(1, READ)\n  INPB("OTHER:IOC:PV")\n}', "site.acf")
    with pytest.raises(AcfError) as ei:
        acf.bind({})
    assert ei.value.line == 3 and "INPB(OTHER:IOC:PV): not a PV of this IOC" in str(ei.value)


def test_macro_option_parsing():
    assert parse_macros("A=1, B = two,") == {"A": "1", "B": "two"}
    with pytest.raises(AcfError, match="expected NAME=value"):
        parse_macros("A")


@pytest.mark.ca
def test_calc_on_the_iocs_own_pv_over_channel_access(ioc_factory, tmp_path):
    """INPA is the IOC's NumEvents: writes are allowed only while it is below 100, evaluated
    at each put (caput opens a new channel each time)."""
    from ca_tools import caget, caput

    acf = tmp_path / "interlock.acf"
    acf.write_text(f'UAG(me) {{ "{getpass.getuser()}" }}\n'
                   'ASG(DEFAULT) {\n'
                   '    INPA("$(P)NumEvents")\n'
                   '    RULE(1, READ)\n'
                   '    RULE(1, WRITE) { UAG(me) CALC("A<100") }\n'
                   '}\n'
                   'ASG(EXPERT) { RULE(1, READ) }\n')
    h = ioc_factory(extra_args=["--acf", str(acf)])
    assert caput(h.env, h.pv("NumEvents"), 500).returncode == 0  # A was 0
    assert caget(h.env, h.pv("NumEvents")) == "500"
    r = caput(h.env, h.pv("NumEvents"), 10)  # A = 500 now: refused
    assert r.returncode != 0 or "denied" in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    assert caget(h.env, h.pv("NumEvents")) == "500"
    assert caget(h.env, h.pv("State_RBV"))  # the IOC serves on
