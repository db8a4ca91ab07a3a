"""Jobs: the RunPod-style asynchronous face of speech (``/run``, ``/status``, ``/stream``, webhooks, S3).

* :mod:`.state`: a job's states and record, the stores' errors, :class:`~.state.JobStoreAPI`.
* :mod:`.memory`: :class:`~.memory.JobStore`, jobs in this process (``JOB_STORE=memory``).
* :mod:`.redis_store` (with :mod:`.redis_scripts`): jobs shared by replicas through Redis.
* :mod:`.request`: :class:`~.request.JobRequest`, a speech request plus delivery options.
* :mod:`.runner`: :class:`~.runner.JobRunner`, running one job and delivering its result (inline, S3 and its
  sidecars, streamed pieces).
* :mod:`.storage`: S3 uploads and the bucket and key rules.
* :mod:`.webhooks`: guarded delivery of a job's final state.

May import: ``speech``, ``audio`` and ``core``; never an entry point.
"""
