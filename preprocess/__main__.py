"""`python -m preprocess`: the CLI. Guarded: a local cluster's spawned workers re-import this module."""

from preprocess.cli import main

if __name__ == "__main__":
    main()
