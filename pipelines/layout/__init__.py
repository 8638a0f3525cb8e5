"""The data layouts every stage shares: img2dataset's raw shards, the task sample table, and how an image
becomes a :class:`~pipelines.layout.task_table.Picture` (the foundation the stages stand on)."""
