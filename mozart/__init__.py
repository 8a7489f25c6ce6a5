"""Mozart: learn classical piano music from MIDI and write new pieces in the style of a chosen composer."""
__version__ = "0.1.0"
