"""``python -m outreach …`` is the ``outreach`` command line."""

from outreach.cli import main

main(prog_name="outreach")
