"""Property test: any junk value for any key gives a Config or a ConfigError, nothing else.

Hypothesis replaces the value at a random key path of real example files (native and legacy)
with random junk (None, bools, huge/negative ints, NaN/inf floats, strings, lists, mappings)
or inserts a random key. Loading must either succeed — and then the applied settings must be
computable from the model tables without error — or raise ConfigError with a one-line message
naming the file.
"""

from __future__ import annotations

import copy
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from picodaq_ioc.config import ConfigError, scope_settings
from picodaq_ioc.config.check import applied_settings
from picodaq_ioc.config.loader import read_mapping, validate_data

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
BASES = [CONFIGS / n for n in ("demo.yaml", "kamiokanne.yaml", "cosmo_coincidence.yaml", "sipm.yaml")] + [
    CONFIGS / "legacy" / n for n in ("PSconfig.yaml", "BMconfig.yaml", "DAQconfig.yaml", "PMpulse.yaml")
] + [CONFIGS / "legacy" / "picocosmo" / "Kanne.daq"]
DOCS = {p: read_mapping(p) for p in BASES}


def key_paths(obj, prefix=()):
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += key_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += key_paths(v, (*prefix, i))
    return out


PATHS = [(p, kp) for p, d in DOCS.items() for kp in key_paths(d)]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2, 0.0, 1e-12, 1e12, 65, "A", "B", "Z", "EXT", "DC50", "rising", "2000",
                     "PSconfig.yaml", "../nowhere.yaml", "", "muon", "sipm"]),
    st.text(max_size=8),
)
junk = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)), max_leaves=6)


def _set(doc, path, value):
    cur = doc
    for p in path[:-1]:
        cur = cur[p]
    cur[path[-1]] = value


def _attempt(base: Path, doc) -> None:
    try:
        cfg = validate_data(doc, base)
    except ConfigError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg
        assert exc.path is not None and str(base.parent) in exc.path
        return
    scope_settings(cfg)
    applied_settings(cfg)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), junk)
def test_junk_value_at_any_key(target, value):
    base, path = target
    doc = copy.deepcopy(DOCS[base])
    _set(doc, path, value)
    _attempt(base, doc)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.sampled_from(PATHS + [(p, ()) for p in BASES]), st.text(min_size=1, max_size=10), junk)
def test_junk_key_anywhere(target, key, value):
    base, path = target
    doc = copy.deepcopy(DOCS[base])
    cur = doc
    for p in path:
        cur = cur[p]
    if not isinstance(cur, dict):
        return
    cur[key] = value
    _attempt(base, doc)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.sampled_from(BASES), st.dictionaries(st.text(max_size=12), junk, max_size=5))
def test_junk_document(base, doc):
    _attempt(base, doc)
