"""``python -m edge``: the agent's command line without the collector's imports (lighter)."""

from edge.cli import app

if __name__ == "__main__":
    app()
