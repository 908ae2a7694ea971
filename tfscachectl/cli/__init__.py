"""The ``tfscachectl`` command line."""
