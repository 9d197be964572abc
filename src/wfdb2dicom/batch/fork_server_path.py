"""The first module ``--scheduler local``'s fork server imports: it takes the current
directory off the server's ``sys.path``.

A fork server is started with ``python -c``, which puts the current directory first on
``sys.path`` while it imports what its workers inherit (CPython 3.11's fork server does not
take the parent's path for that). A ``dask.py`` in the directory the batch was started from
(bench/ has one) was imported instead of Dask, and no worker started. Workers spawned by
Dask never had the current directory on their path either. Imported nowhere else: in
another process it could take away a real entry.
"""

import sys

if sys.path and sys.path[0] == "":
    del sys.path[0]
