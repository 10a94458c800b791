"""The sink: consumes ``predictions`` and ``labels.joined`` and writes the offline feature log and the
label log as time-partitioned, rolled parquet parts, committing offsets only after their parts are durable."""
