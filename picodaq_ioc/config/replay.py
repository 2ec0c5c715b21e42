"""A replay run's configuration: the recorded file's device settings over the user's configuration.

Kept apart from :mod:`.convert` because it validates through :mod:`.loader` (which the
model checks in :mod:`.limits`, used by the loader, may not import back)."""

from __future__ import annotations

from .convert import config_dump
from .schema import Config


def replay_config(cfg: Config) -> Config:
    """``cfg`` with the device settings of the file ``cfg.replay.input`` (replay backend).

    Channels, timebase, trigger and signal generator become the recorded (applied) ones
    and, for the project's HDF5 files, the model family/variant the file was taken with;
    everything else (analysis, buffer, output, HDF5 writer) stays. The replay backend
    accepts exactly these settings.

    Raises
    ------
    RecordingError
        The file is missing, unreadable or of an unknown format (one line).
    """
    from ..scope.recorded import RecordingError, open_recording
    from .loader import validate_data

    if not cfg.replay.input:
        raise RecordingError("replay.input: no recorded file given (--input FILE)")
    rec = open_recording(cfg.replay.input)
    a = rec.applied
    data = config_dump(cfg)
    data["channels"] = {ch: {"enabled": True, "range": c.range_v, "coupling": c.coupling.value, "offset": c.offset_v}
                        for ch, c in a.channels.items() if c.enabled}
    data["timebase"] = {"sample_interval": a.sample_interval_s, "samples": a.n_samples,
                        "pretrigger": a.n_pre / a.n_samples, "segments": a.n_segments}
    t = a.trigger
    data["trigger"] = {"enabled": t.enabled, "source": t.source, "level": t.threshold_v,
                       "direction": t.direction.value, "delay": t.delay_samples,
                       "auto_timeout": t.auto_trigger_s or 0.0}
    sg = a.siggen
    data["siggen"] = {"enabled": sg.enabled, "waveform": sg.waveform.value, "frequency": sg.frequency_hz,
                      "amplitude": sg.pk_to_pk_v, "offset": sg.offset_v, "sweep": sg.sweep.value,
                      "stop_frequency": sg.stop_frequency_hz, "dwell_time": sg.dwell_time_s}
    dev = dict(data.get("device") or {})
    rec_dev = (rec.config or {}).get("device") or {} if rec.kind == "hdf5" else {}
    for key in ("model", "variant", "resolution_bits"):
        if rec_dev.get(key) is not None:
            dev[key] = rec_dev[key]
    dev["backend"] = "replay"
    data["device"] = dev
    return validate_data(data, f"{cfg.source_file or 'configuration'} + recorded settings of {rec.path}",
                         check_model=False)


__all__ = ["replay_config"]
