"""PV groups of the IOC, one module per group (device, acquisition, timebase, channel,
trigger, signal generator, buffer, statistics, waveform publishing, analysis)."""
