"""Queued-job execution: every call one batch job, its input and output in the cache
directory. ``queues`` talks to the scheduler (SLURM directly, pysqa, or local processes for
tests); ``engine`` tracks the jobs of one executor with one queue query per interval."""
