"""pgq's benchmark suite (issue 6): ``make bench`` runs it, ``python -m benchmarks --help``.

Each scenario runs in a fresh database on the server :func:`pgq.devdb.find_server` finds,
prints one JSON line per result on stdout and its progress on stderr. See README.md here.
"""
