"""The ``outreach`` command line; its code is the package ``outreach.cli``.

``python cli.py …`` in a source checkout is the same as the installed
``outreach …`` console script.
"""

from outreach.cli import main

if __name__ == "__main__":
    main()
