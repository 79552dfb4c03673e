"""`python -m actionrec` (and `torchrun -m actionrec`): the `actionrec` command."""

from actionrec.cli import main

main()
