"""The man pages reputable(8) and reputable.toml(5), built from the sources so that they cannot drift.

The command reference is walked out of `reputable.cli.build_parser()`
(`commands`, `command_page`); the configuration reference is read out of the
comments of conf/reputable.toml and held key by key to `reputable.config`'s
schema (`annotated_config`, `config_page`). Both are set in roff by `roff`.
Only `build` does I/O. Run at package build time, from the repository root:

    python3 packaging/manpages.py OUTDIR

Every module here needs the standard library and the stdlib-only parts of
`reputable` (`cli`, `config`, `errors`, `log`, `signing`) alone, so that Debian
12's python3 runs it before any dependency is installed.
"""
