"""`python -m reputable`: the same as the `reputable` command."""

from reputable.cli import main

raise SystemExit(main())
