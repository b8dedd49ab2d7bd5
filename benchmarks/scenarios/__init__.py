"""One module per scenario of issue 6; each has ``NAME`` and ``run(ctx) -> Iterator[Result]``."""
