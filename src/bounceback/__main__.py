"""``python -m bounceback``: the same as the ``bounceback`` command."""

from bounceback.cli import main

if __name__ == "__main__":
    main()
