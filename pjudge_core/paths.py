"""Where the project's data files are: the folders beside the package, named once."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"  # prompt files and preference pairs shipped with the project
PRESETS = REPO / "presets"  # persona, pair, model and query presets (`presets.py` reads them)
