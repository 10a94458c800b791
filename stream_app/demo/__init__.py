"""``make demo`` / ``python -m stream_app.demo``: the whole system on one machine, from nothing to a summary.

Starts Redis and Kafka (or uses the ``STREAMSCORE_*`` addresses given), runs the offline pipeline into a
private workspace under ``data/demo/`` (so a developer's ``make pipeline`` state is never touched), starts
the stream worker, streams about a minute of live transactions and labels while showing progress, then
writes ``summary.json`` and ``summary.png`` and stops everything it started.

One concept per module: ``config`` (what to run), ``services`` (Redis/Kafka lifecycle), ``steps`` (the
pipeline's CLIs), ``tap`` (what the demo produces and reads back), ``records`` and ``summary`` (pure
parsing and maths), ``progress`` (the per-second lines), ``chart`` (the PNG), ``run`` (the orchestration);
the worker subprocess is ``stream_app.worker.process``."""
