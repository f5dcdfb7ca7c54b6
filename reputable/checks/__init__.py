"""Host reputation checks: each an I/O half (`query_*`, through the resolver) and a pure half (`interpret_*`)."""
