"""`python -m scriptlabs` runs the command line."""

from scriptlabs.cli import main

raise SystemExit(main())
