"""`python -m actionrec.cli`: the `actionrec` command."""

from actionrec.cli import main

main()
