"""``python -m eliverec``: the same CLI as the ``eliverec`` command."""

from eliverec.cli import app

if __name__ == "__main__":
    app()
