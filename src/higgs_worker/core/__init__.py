"""The bottom of the package: what every layer may import, and which imports nothing above it.

* :mod:`.settings`: the one settings object (environment variables, validated).
* :mod:`.logs`: logging set-up, with secrets redacted.
* :mod:`.errors`: the error types every layer raises, and :func:`~.errors.public_error`.
* :mod:`.schema`: the one request schema (:class:`~.schema.SpeechRequest`) and its text rules.
* :mod:`.openai_schema`: OpenAI's speech request body, converted into the one schema.
* :mod:`.results`: :class:`~.results.SpeechResult` and its usage.
* :mod:`.text`: text rules: upstream's normalisation, chunking, word counts.
* :mod:`.spoken`: spoken-form text (numbers, money, dates, units, abbreviations as words), mapped back.
* :mod:`.cli_input`: what the command line reads from the user before any work (files, options, voices).
* :mod:`.safe_fetch`: the URL guard for anything fetched on a caller's behalf.
* :mod:`.cli_input`: the command line's files and options checked before any work, and its request.

May import: nothing of ``higgs_worker`` outside ``core``.
"""
