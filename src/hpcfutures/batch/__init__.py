"""Queued-job execution: every call one batch job, its input and output in the cache
directory. ``queues`` talks to the scheduler (SLURM directly, pysqa, or local processes for
tests) behind one interface that takes a ``JobSpec`` and answers in neutral ``JobState``
values, and ``flux_queue`` to Flux behind the same one; the engine that tracks the jobs of
one executor with one queue query per interval is ``engines.job_per_call``;
``terminate`` cancels the jobs a cache directory records, through the queue each entry names."""
