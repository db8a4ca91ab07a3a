"""The bottom of the package: what every layer may import, and which imports nothing above it.

* :mod:`.settings`: the one settings object (environment variables, validated).
* :mod:`.logs`: logging set-up, with secrets redacted.
* :mod:`.errors`: the error types every layer raises, and :func:`~.errors.public_error`.
* :mod:`.schema`: the one request schema (:class:`~.schema.SpeechRequest`) and the result types.
* :mod:`.text`: text rules: upstream's normalisation, chunking, word counts.
* :mod:`.safe_fetch`: the URL guard for anything fetched on a caller's behalf.

May import: nothing of ``higgs_worker`` outside ``core``.
"""
