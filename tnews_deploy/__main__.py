"""`python -m tnews_deploy ...` (and `torchrun ... -m tnews_deploy train ...`): the CLI."""

from .cli import main

if __name__ == "__main__":
    main()
