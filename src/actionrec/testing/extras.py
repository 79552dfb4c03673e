"""The command line as a base install runs it: a script that makes the optional extras' packages
impossible to import, then runs `actionrec` with its own arguments.

    script.write_text(BLOCKER)
    subprocess.run([sys.executable, str(script), "predict", MODEL, VIDEO])

Other packages: replace the `BLOCKED = {...}` line (BLOCKED_LINE) with your own set.
"""

from __future__ import annotations

import textwrap

BLOCKED_LINE = 'BLOCKED = {"fastapi", "pydantic_settings", "uvicorn", "starlette", "torch", "torchvision"}'

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = {"fastapi", "pydantic_settings", "uvicorn", "starlette", "torch", "torchvision"}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    from actionrec.cli import main
    sys.argv = ["actionrec", *sys.argv[1:]]
    main()
""")
