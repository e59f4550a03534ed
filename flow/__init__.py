"""The build and report tools: the board build (flow.build, also `python -m hw.build`) and the
open resource estimate (flow.resources)."""
