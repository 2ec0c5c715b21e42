"""The example configuration files the config tests load (not a test module)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
#: Native layout examples (YAML/JSON in configs/, autosave files excluded).
NATIVE = sorted(p for p in CONFIGS.glob("*") if p.suffix in (".yaml", ".yml", ".json")
                and not p.name.endswith(".autosave.json"))
#: Every picoDAQ/picoCosmo file except the pulse-filter parameter files (not scope configurations).
LEGACY = sorted(
    p for p in (CONFIGS / "legacy").rglob("*")
    if p.suffix in (".yaml", ".daq") and not p.name.lower().startswith("pf")
)
