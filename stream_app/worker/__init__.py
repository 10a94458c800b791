"""The stream worker: Faust consumes transactions and labels, the batch processor turns them into
predictions, dead letters, online/offline feature rows and durable window state."""
