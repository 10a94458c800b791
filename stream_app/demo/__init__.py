"""``make demo`` / ``streamscore demo``: the whole system on one machine, from nothing to a summary.

Starts Redis and Kafka (or uses the ``STREAMSCORE_*`` addresses given), runs the offline pipeline into a
private workspace under ``data/demo/`` (a developer's ``make pipeline`` state is never touched), starts
the stream worker, streams about a minute of live transactions and labels while showing progress, then
writes ``summary.json`` and ``summary.png`` (ending with what the worker's and the sink's ``/metrics``
showed) and stops everything it started. ``run`` orchestrates; the other modules each hold one part
(config, services, pipeline steps, Kafka tap, parsing, summary maths, progress lines, chart, the /metrics
scraper and what it shows); the worker runs as ``stream_app.worker.process.WorkerProcess``."""
